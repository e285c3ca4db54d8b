"""gateway.config.rate_limit: byte rules beside request rules, sizes as people write them."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_byte_size, parse_config
from tests.config.test_config import assert_names, error_of, minimal


def byte_rule(**fields: Any) -> dict[str, Any]:
    return {"name": "upload-bytes", "count": "bytes", "unit": "day", "value": "50GiB", **fields}


def rules_of(*rules: dict[str, Any], **section: Any) -> dict[str, Any]:
    return minimal(rate_limit={"rules": list(rules), **section})


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("50GiB", 50 << 30),
        ("200MiB", 200 << 20),
        ("1.5 GB", 1_500_000_000),
        ("4096", 4096),
        (4096, 4096),
        ("2TiB", 2 << 40),
        ("10KB", 10_000),
    ],
)
def test_sizes_are_read_as_people_write_them(written: Any, size: int) -> None:
    assert parse_byte_size(written) == size
    config = parse_config(rules_of(byte_rule(value=written)), env={})
    assert config.rate_limit.rules[0].value == size
    assert config.rate_limit.rules[0].counts_bytes


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("50GiBs", "could not interpret byte unit: GiBs"),
        ("5 parsecs", "could not interpret byte unit: parsecs"),
        ("-1KiB", "could not parse value and unit"),
        ("0B", "must be from 1 B to 1.0 PiB"),
        ("2PiB", "must be from 1 B to 1.0 PiB"),
        (True, "a number of bytes or a size such as 50GiB"),
        ([1], "a number of bytes or a size such as 50GiB"),
    ],
)
def test_a_bad_size_names_its_key_and_its_unit(value: Any, said: str) -> None:
    message = error_of(rules_of(byte_rule(value=value)), env={})
    assert_names(message, "rate_limit.rules.0.value")
    assert said in message


def test_a_request_rule_takes_no_size() -> None:
    rule = {"name": "deletes", "unit": "minute", "value": "50GiB"}
    message = error_of(rules_of(rule), env={})
    assert_names(message, "rate_limit.rules.0.value")
    assert "count: bytes" in message
    # Its bound is the request log's.
    too_many = error_of(rules_of({**rule, "value": 1_000_001}), env={})
    assert "from 1 to 1000000 requests" in too_many


def test_count_is_requests_or_bytes() -> None:
    message = error_of(rules_of(byte_rule(count="byte")), env={})
    assert_names(message, "rate_limit.rules.0.count")


def test_a_byte_rule_counts_only_routes_that_move_image_data() -> None:
    message = error_of(rules_of(byte_rule(routes=["upload_image", "delete_image"])), env={})
    assert_names(message, "rate_limit.rules.0.routes")
    assert "'delete_image' moves no image data" in message
    config = parse_config(rules_of(byte_rule(routes=["download_image"])), env={})
    assert config.rate_limit.rules[0].byte_routes == {"download_image"}
    # None named: every route that moves image data.
    every = parse_config(rules_of(byte_rule()), env={}).rate_limit.rules[0]
    assert every.byte_routes == {"upload_image", "stage", "download_image"}


@pytest.mark.parametrize("field", [{"path": "^/v2/images/"}, {"methods": ["PUT"]}])
def test_a_byte_rule_is_picked_by_route_not_by_path_or_method(field: dict[str, Any]) -> None:
    message = error_of(rules_of(byte_rule(**field)), env={})
    assert_names(message, "rate_limit.rules.0")
    assert "picks its calls by routes" in message


def test_the_slice_size_is_a_size_within_bounds() -> None:
    config = parse_config(rules_of(byte_rule(), byte_slice="8MiB"), env={})
    assert config.rate_limit.byte_slice == 8 << 20
    assert parse_config(rules_of(), env={}).rate_limit.byte_slice == 16 << 20
    for bad in ("10B", "2GiB", "8 MiBs"):
        assert_names(error_of(rules_of(byte_slice=bad), env={}), "rate_limit.byte_slice")
