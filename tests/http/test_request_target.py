"""A value from a token or a path, put into a URL the gateway sends: one segment."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from gateway.http.request_target import path_segment


@pytest.mark.parametrize(
    "value",
    ["3fa85f64-5717-4562-b3fc-2c963f66afa6", "a_b.c~d-E9", "a b", "a/b", "ü", "%2F", "x?y#z",
     "...", ".a", "..;", "../x", "./"],
)  # fmt: skip
def test_a_path_segment_is_encoded_as_quote_encodes_it(value: str) -> None:
    assert path_segment(value) == quote(value, safe="")


@pytest.mark.parametrize("value", [".", "..", ""])
def test_a_dot_segment_or_an_empty_value_is_refused(value: str) -> None:
    """The second lock behind the path grammars: no value may move the path."""
    with pytest.raises(ValueError, match="names no resource"):
        path_segment(value)
