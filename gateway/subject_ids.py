"""The charset of project and user ids, below every package that holds one.

A token's project and user ids become rate-limit keys, audit fields, header
values and URL path segments (the membership look-up); an image member in a
path is a project id too. Keystone's hex ids, UUIDs, names and e-mail
addresses fit; "/", "%", "?", "#", ",", spaces and a leading "." (".." is a
path step) do not. Authentication holds tokens' ids to it, the route table
holds member ids to it.
"""

from __future__ import annotations

import re

SUBJECT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._~@:+=-]{0,254}")
