"""Hop-by-hop headers (RFC 9110 §7.6.1): those always so, and those Connection names,
whatever the case of the name or of the Connection token."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway.http.hop_by_hop import connection_tokens, end_to_end


def test_hop_by_hop_headers_and_those_named_in_connection_are_dropped() -> None:
    headers = CIMultiDict(
        [
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Host", "gateway"),
            ("Content-Length", "0"),
            ("Accept", "*/*"),
        ]
    )
    assert list(end_to_end(headers).items()) == [("Accept", "*/*")]


@pytest.mark.parametrize(
    "connection", ["close, X-Private", "close, X-PRIVATE", "x-private", " CLOSE ,x-Private "]
)
def test_a_name_in_connection_is_dropped_whatever_its_case(connection: str) -> None:
    headers = CIMultiDict(
        [("Connection", connection), ("x-private", "1"), ("X-PRIVATE", "2"), ("Accept", "*/*")]
    )
    assert list(end_to_end(headers).items()) == [("Accept", "*/*")]


def test_connection_tokens_are_lower_case_names() -> None:
    values = ["Keep-Alive, X-Private", " ,TE,, Accept-Language "]
    assert connection_tokens(values) == {"keep-alive", "x-private", "te", "accept-language"}
