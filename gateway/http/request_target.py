"""The request target as the client sent it, and values from tokens put into URLs.

The query string is forwarded byte for byte: aiohttp's ``query_string`` is
decoded, and re-encoding it is not the identity (``?x=%23y`` would arrive
as ``?x=``, the ``#`` taken for a fragment). Values that come from a token
go into a URL path only quoted, so a project id of ``../../v2/images?x=``
names a path segment, never a path.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web


def raw_query(request: web.Request) -> str:
    """The query string exactly as received, without its ``?``; "" when none."""
    _, _, query = request.raw_path.partition("?")
    return query


def path_segment(value: str) -> str:
    """``value`` as one URL path segment: every reserved character quoted."""
    return quote(value, safe="")
