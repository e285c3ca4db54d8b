"""Values from a token put into a URL the gateway sends.

They go into a path only quoted, as one segment, so that a project id of
``../../v2/images?x=`` names a segment, never another path or a query (the
project and user charset, gateway.authn.tokens.SUBJECT_ID, refuses such ids
anyway; this is the second lock).
"""

from __future__ import annotations

from urllib.parse import quote


def path_segment(value: str) -> str:
    """``value`` as one URL path segment: every reserved character quoted."""
    return quote(value, safe="")
