"""Values from a token or the client's path put into a URL the gateway sends.

They go into a path only quoted, as one segment, so that a project id of
``../../v2/images?x=`` names a segment, never another path or a query (the
project and user charset, gateway.authn.tokens.SUBJECT_ID, refuses such ids
anyway; this is the second lock).
"""

from __future__ import annotations

import re
from urllib.parse import quote

# What quote() never encodes (RFC 3986 §2.3 unreserved characters).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def path_segment(value: str) -> str:
    """``value`` as one URL path segment: every reserved character quoted."""
    # A UUID, the usual value, is unreserved throughout: nothing to encode.
    if _UNRESERVED.fullmatch(value):
        return value
    return quote(value, safe="")
