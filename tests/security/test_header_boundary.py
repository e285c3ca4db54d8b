"""Only allow-listed client headers reach the backend, in any spelling.

The backend here records the raw bytes of every request head, so a header
that arrives under any spelling (``X_Roles``, ``x_roles``, ``X_ROLES``) is
seen as it was sent.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from tests.security.conftest import RawBackend, exchange, header_lines, parse_response
from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory

# Every spelling a WSGI server that folds "_" into "-" would read as ours,
# and the oslo.context headers that name a scope or a token.
SPOOFED = [
    ("X_Roles", "admin"),
    ("x_roles", "admin"),
    ("X_ROLES", "admin"),
    ("X_Project_Id", "project-z"),
    ("X_Tenant_Id", "project-z"),
    ("X_User_Id", "root"),
    ("X_Identity_Status", "Confirmed"),
    ("X-Roles", "admin"),
    ("X-Service-Roles", "service"),
    ("OpenStack-System-Scope", "all"),
    ("OpenStack_System_Scope", "all"),
    ("X-Storage-Token", "stolen"),
    ("X_Auth_Token", "stolen"),
    ("X-Is-Admin-Project", "True"),
]
IDENTITY_NAMES = {
    b"x-roles",
    b"x-project-id",
    b"x-tenant-id",
    b"x-user-id",
    b"x-identity-status",
    b"x-service-roles",
    b"openstack-system-scope",
    b"x-storage-token",
    b"x-auth-token",
    b"x-is-admin-project",
}


def delete_request(image: str, token: str, extra: list[tuple[str, str]]) -> bytes:
    lines = [f"DELETE /v2/images/{image} HTTP/1.1", "Host: gateway", f"X-Auth-Token: {token}"]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode()


async def test_no_spelling_of_an_identity_header_reaches_the_backend(
    make_gateway: GatewayFactory,
    raw_backend: RawBackend,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await make_gateway(raw_backend.url)
    image = str(uuid.uuid4())
    extra = [*SPOOFED, ("Accept", "application/json"), ("X-Custom-Thing", "1")]
    with caplog.at_level(logging.INFO, logger="gateway.headers"):
        raw = await exchange(gateway.port, delete_request(image, token(), extra))
    assert parse_response(raw).status == 204
    [head] = raw_backend.requests("DELETE")
    lines = header_lines(head)
    folded = [name.lower().replace(b"_", b"-") for name, _ in lines]
    # Ours, each exactly once; none of the client's.
    for name in (b"x-roles", b"x-project-id", b"x-tenant-id", b"x-user-id", b"x-identity-status"):
        assert folded.count(name) == 1, head
    assert dict((n.lower(), v.strip()) for n, v in lines)[b"x-roles"] == b"cloudimages:admin"
    assert not {n for n in folded if n in IDENTITY_NAMES} - {
        b"x-roles",
        b"x-project-id",
        b"x-tenant-id",
        b"x-user-id",
        b"x-identity-status",
    }
    assert all(b"_" not in name for name, _ in lines), head
    assert b"stolen" not in head
    assert b"project-z" not in head
    assert b"root" not in head
    # An allow-listed header passes; one not on the list does not.
    assert b"accept" in folded
    assert b"x-custom-thing" not in folded
    # Logged once for the request, by name, never by value.
    [record] = [r for r in caplog.records if r.name == "gateway.headers"]
    message = record.getMessage()
    assert "x-roles" in message
    assert "openstack-system-scope" in message
    assert "stolen" not in message
    assert "admin" not in message.replace("x-is-admin-project", "")


async def test_dropped_identity_headers_are_counted(
    make_gateway: GatewayFactory, raw_backend: RawBackend, token: TokenFactory
) -> None:
    from gateway.app import GATEWAY

    gateway = await make_gateway(raw_backend.url)
    metrics = gateway.app[GATEWAY].metrics
    image = str(uuid.uuid4())
    await exchange(gateway.port, delete_request(image, token(), [("X_Roles", "admin")]))
    await exchange(gateway.port, delete_request(image, token(), []))
    dropped = metrics.snapshot().counters["gateway_client_identity_headers_dropped"]
    assert dropped == {(): 1.0}
