"""Values from a token or the client's path put into a URL the gateway sends.

They go into a path only quoted, as one segment, so that a project id of
``../../v2/images?x=`` names a segment, never another path or a query. The
grammars that admit them (gateway.subject_ids.SUBJECT_ID for a token's
project, gateway.http.path_grammar for a path's values) refuse such values
anyway; this is the second lock.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# What quote() never encodes (RFC 3986 §2.3 unreserved characters).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
# "." and ".." are unreserved, and quote() leaves them as they are: as a
# whole segment they are a step in the path (RFC 3986 §5.2.4), not a name;
# an empty segment vanishes where a hop merges slashes.
_NOT_A_NAME = frozenset({".", "..", ""})


def path_segment(value: str) -> str:
    """``value`` as one URL path segment: every reserved character quoted.

    A dot segment or an empty value is refused (ValueError): no value may
    move the path."""
    # A UUID, the usual value, is unreserved throughout: nothing to encode.
    if _UNRESERVED.fullmatch(value):
        if value in _NOT_A_NAME:
            raise ValueError(f"{value!r} names no resource: not a path segment")
        return value
    return quote(value, safe="")
