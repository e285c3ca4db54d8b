"""The allow-list itself: names folded for case and ``_``/``-``, identity never forwardable."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway.config import ConfigError, parse_config
from gateway.http.header_boundary import DEFAULT_FORWARDED, HeaderBoundary, fold, relayable
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys


def test_fold_merges_case_and_underscores() -> None:
    assert fold("X_Roles") == fold("x-roles") == fold("X-ROLES") == "x-roles"


def test_only_listed_headers_pass_and_spellings_of_identity_are_reported() -> None:
    boundary = HeaderBoundary()
    headers = CIMultiDict(
        [
            ("Accept", "application/json"),
            ("X_Roles", "admin"),
            ("x_roles", "admin"),
            ("X-Project-Id", "p"),
            ("OpenStack-System-Scope", "all"),
            ("X-Storage-Token", "t"),
            ("X-Auth-Token", "credential"),
            ("X-Custom", "not listed"),
            ("Range", "bytes=0-9"),
        ]
    )
    kept, spoofed = boundary.forwardable(headers)
    assert list(kept.items()) == [("Accept", "application/json"), ("Range", "bytes=0-9")]
    assert spoofed == ["openstack-system-scope", "x-project-id", "x-roles", "x-storage-token"]
    assert boundary.identity_headers_dropped == 1


def test_a_request_with_only_credentials_is_not_counted_as_spoofing() -> None:
    boundary = HeaderBoundary()
    _, spoofed = boundary.forwardable(CIMultiDict({"X-Auth-Token": "t", "Authorization": "x"}))
    assert spoofed == []
    assert boundary.identity_headers_dropped == 0


def test_an_extra_header_from_config_is_forwarded_in_any_spelling() -> None:
    boundary = HeaderBoundary(["X-Trace-Context"])
    kept, _ = boundary.forwardable(CIMultiDict({"x_trace_context": "1"}))
    assert list(kept.items()) == [("x_trace_context", "1")]


@pytest.mark.parametrize(
    "name", ["X-Forwarded-For", "x_forwarded_host", "Forwarded", "X-Forwarded-Proto", "Expect"]
)
def test_the_gateways_own_headers_never_pass_even_when_listed(name: str) -> None:
    """The path a request took is the gateway's to write: a client's X-Forwarded-For
    would make the backend log (or trust) an address the client chose."""
    boundary = HeaderBoundary([name, "X-Trace-Context"])
    kept, spoofed = boundary.forwardable(CIMultiDict({name: "203.0.113.9", "X-Trace-Context": "1"}))
    assert list(kept.items()) == [("X-Trace-Context", "1")]
    assert spoofed == []


@pytest.mark.parametrize("name", ["X-Roles", "x_project_id", "Authorization", "X-Storage-Token"])
def test_config_refuses_to_forward_an_identity_header(keys: Keys, name: str) -> None:
    with pytest.raises(ConfigError, match=r"headers\.forward: .*identity or credential"):
        parse_config(config_data("http://127.0.0.1:1", keys, headers={"forward": [name]}))


def test_defaults_hold_no_identity_header() -> None:
    with pytest.raises(ValueError, match="identity headers can never be forwarded"):
        HeaderBoundary(["x_user_id"])
    assert all(fold(name) == name for name in DEFAULT_FORWARDED)


@pytest.mark.parametrize("connection", ["close, Accept", "close, ACCEPT", "accept"])
def test_a_listed_header_named_in_connection_is_dropped_as_hop_by_hop(connection: str) -> None:
    kept, _ = HeaderBoundary().forwardable(
        CIMultiDict([("Connection", connection), ("Accept", "*/*"), ("Range", "bytes=0-")])
    )
    assert list(kept.items()) == [("Range", "bytes=0-")]


@pytest.mark.parametrize("name", ["Connection", "transfer_encoding", "Host", "Content-Length"])
def test_config_refuses_to_forward_a_hop_by_hop_header(keys: Keys, name: str) -> None:
    with pytest.raises(ConfigError, match=r"headers\.forward: .*hop-by-hop"):
        parse_config(config_data("http://127.0.0.1:1", keys, headers={"forward": [name]}))


def test_a_response_keeps_end_to_end_headers_and_drops_identity_in_any_spelling() -> None:
    headers = CIMultiDict(
        [
            ("Content-Type", "application/json"),
            ("X-Auth-Token", "t"),
            ("x_subject_token", "t"),
            ("X-SERVICE-TOKEN", "t"),
            ("X_Roles", "admin"),
            ("X-Identity-Status", "Confirmed"),
            ("x_tenant_id", "p"),
            ("X-Service-Catalog", "[]"),
            ("ETag", '"e"'),
            ("Connection", "close, X-Private"),
            ("X-Private", "1"),
            ("Transfer-Encoding", "chunked"),
            ("OpenStack-Image-Import-Methods", "glance-direct"),
            ("Location", "http://backend/v2/images/x"),
        ]
    )
    assert list(relayable(headers)) == [
        "Content-Type",
        "ETag",
        "OpenStack-Image-Import-Methods",
        "Location",
    ]
