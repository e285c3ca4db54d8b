"""Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only."""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

ALWAYS_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # Recomputed by whoever sends the message on.
        "host",
        "content-length",
    }
)


def end_to_end(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """A copy without hop-by-hop headers, including those named in Connection."""
    dropped = hop_by_hop_names(headers)
    return CIMultiDict(
        [(name, value) for name, value in headers.items() if name.lower() not in dropped]
    )


def hop_by_hop_names(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Lower-case names of the hop-by-hop headers of a message: those always
    hop-by-hop and those its Connection header names."""
    if "Connection" not in headers:
        return ALWAYS_HOP_BY_HOP
    return ALWAYS_HOP_BY_HOP | connection_tokens(headers.getall("Connection"))


def connection_tokens(values: Iterable[str]) -> frozenset[str]:
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())
