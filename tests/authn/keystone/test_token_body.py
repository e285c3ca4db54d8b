"""Keystone's token body to an identity: the documented shape or a reasoned refusal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.authn.keystone.token_body import from_record, parse_token_body, to_record
from gateway.authn.tokens import InvalidToken

BODY: dict[str, Any] = {
    "token": {
        "methods": ["password"],
        "user": {"id": "u1", "name": "alice", "domain": {"id": "default", "name": "Default"}},
        "audit_ids": ["aud1"],
        "expires_at": "2030-01-01T00:00:00.000000Z",
        "issued_at": "2029-12-31T23:00:00.000000Z",
        "project": {"id": "p1", "name": "images", "domain": {"id": "d1", "name": "Dom"}},
        "is_domain": False,
        "roles": [{"id": "r1", "name": "Member"}, {"id": "r2", "name": "reader"}],
    }
}


def body_with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    for key, value in changes.items():
        if value is None:
            del body["token"][key]
        else:
            body["token"][key] = value
    return body


def test_the_identity_keystonemiddleware_would_see() -> None:
    token = parse_token_body(BODY)
    identity = token.identity
    assert (identity.project_id, identity.project_name) == ("p1", "images")
    assert (identity.project_domain_id, identity.project_domain_name) == ("d1", "Dom")
    assert (identity.user_id, identity.user_name) == ("u1", "alice")
    assert (identity.user_domain_id, identity.user_domain_name) == ("default", "Default")
    assert identity.roles == frozenset({"member", "reader"})
    assert identity.is_admin_project is True, "absent reads as true, as keystonemiddleware"
    assert token.expires_at == 1893456000.0
    assert token.issued_at == 1893452400.0
    assert token.audit_id == "aud1"
    assert parse_token_body(body_with(is_admin_project=False)).identity.is_admin_project is False


def test_a_record_round_trips() -> None:
    token = parse_token_body(BODY)
    assert from_record(to_record(token)) == token


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "Keystone's reply is not a token."),
        ({"token": "x"}, "Keystone's reply is not a token."),
        (body_with(project=None), "The token is not scoped to a project."),
        (body_with(project=[]), "The token is not scoped to a project."),
        (body_with(user=None), "Keystone's reply has no user."),
        (body_with(user={"id": 7}), "Keystone's reply has no usable user id."),
        (body_with(user={"id": "u\n1"}), "Keystone's reply has no usable user id."),
        (body_with(project={"id": "p", "domain": "d"}), "malformed project domain"),
        (body_with(roles=None), "Keystone's reply has no role list."),
        (body_with(roles=[{"id": "r"}]), "unnamed or holds a comma"),
        (body_with(roles=[{"name": "a,admin"}]), "unnamed or holds a comma"),
        (body_with(expires_at=None), "Keystone's reply has no expires_at."),
        (body_with(expires_at="tomorrow"), "malformed expires_at"),
        (body_with(expires_at="2030-01-01T00:00:00"), "expires_at without a time zone"),
        (body_with(is_admin_project="yes"), "malformed is_admin_project"),
        (body_with(audit_ids="a"), "malformed audit_ids"),
    ],
)
def test_an_unexpected_shape_is_refused_with_a_reason(body: Any, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason.replace(".", r"\.")):
        parse_token_body(body)


@pytest.mark.parametrize("data", [b"[]", b"{}", b'{"roles": []}'])
def test_a_record_of_another_shape_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a token record"):
        from_record(data)
