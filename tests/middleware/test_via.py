"""Via parsing: members, comments, and what counts as malformed."""

from __future__ import annotations

import pytest

from gateway.middleware.via import received_by


def test_members_and_comments() -> None:
    values = ["1.1 edge-a, HTTP/1.1 cache.example:8080 (Squid, v4)", "2 gw"]
    assert received_by(values) == ["edge-a", "cache.example:8080", "gw"]


def test_empty_members_are_ignored() -> None:
    assert received_by([" , 1.0 a ,"]) == ["a"]


@pytest.mark.parametrize("value", ["garbage", "1.1", "1.1 a b", "1.1 a (unclosed"])
def test_malformed(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        received_by([value])
