"""None of the backend's identity or credential headers reaches the client.

The backend here is a plain socket that writes each response byte for byte,
so the headers arrive in the spellings a careless or compromised backend
might use (``x_subject_token``, ``X-SERVICE-TOKEN``), on every kind of
response the gateway relays: a JSON document, a created image's 201, a
streamed download, an error passed through or rewritten into a fault, and
version discovery.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tests.http.conftest import RACKSPACE_POLICY
from tests.security.conftest import LiveGateway, exchange, listening, parse_response
from tests.support.tokens import TokenFactory

ServeGateway = Callable[..., Awaitable[LiveGateway]]

# Every family of identity header keystonemiddleware and oslo.context read,
# in odd case and with underscores; each value carries a marker to look for.
LEAKED = [
    ("X-Auth-Token", "LEAK-auth-token"),
    ("x_subject_token", "LEAK-subject-token"),
    ("X-SERVICE-TOKEN", "LEAK-service-token"),
    ("X_Roles", "LEAK-roles"),
    ("x-Identity-Status", "LEAK-identity-status"),
    ("X-Service-Identity-Status", "LEAK-service-identity-status"),
    ("X_Project_Id", "LEAK-project-id"),
    ("X-Project-Name", "LEAK-project-name"),
    ("x-tenant-id", "LEAK-tenant-id"),
    ("X_Tenant", "LEAK-tenant"),
    ("X-User-Id", "LEAK-user-id"),
    ("X_USER_NAME", "LEAK-user-name"),
    ("X-User", "LEAK-user"),
    ("X-Domain-Id", "LEAK-domain-id"),
    ("X_User_Domain_Name", "LEAK-user-domain-name"),
    ("X-Service-Roles", "LEAK-service-roles"),
    ("x_service_catalog", "LEAK-service-catalog"),
    ("X-Role", "LEAK-role"),
    ("X-Is-Admin-Project", "LEAK-is-admin-project"),
    ("X-Storage-Token", "LEAK-storage-token"),
    ("OpenStack_System_Scope", "LEAK-system-scope"),
    ("Authorization", "LEAK-authorization"),
]
# What a Glance client needs from a response: these still pass.
ALLOWED = [
    ("ETag", '"3f2c"'),
    ("OpenStack-image-import-methods", "glance-direct,web-download"),
    ("Content-MD5", "aGVsbG8="),
    ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
    ("Cache-Control", "no-cache"),
]


@dataclass
class LeakyBackend:
    """Answers every request with the set status and body, the identity
    headers above in their odd spellings, and the allowed ones."""

    status: int = 200
    reason: str = "OK"
    content_type: str = "application/json"
    body: bytes = b"{}"
    # Sent as chunks of this size with Transfer-Encoding: chunked; None
    # sends Content-Length.
    chunk_size: int | None = None
    location: str | None = None
    port: int = 0
    targets: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def head(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {self.reason}", f"Content-Type: {self.content_type}"]
        lines += [f"{name}: {value}" for name, value in [*LEAKED, *ALLOWED]]
        if self.location is not None:
            lines.append(f"Location: {self.url}{self.location}")
        if self.chunk_size is None:
            lines.append(f"Content-Length: {len(self.body)}")
        else:
            lines.append("Transfer-Encoding: chunked")
        return "\r\n".join([*lines, "", ""]).encode()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.targets.append(head.split(b" ", 2)[1])
                length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if length is not None:
                    await reader.readexactly(int(length.group(1)))
                writer.write(self.head())
                if self.chunk_size is None:
                    writer.write(self.body)
                else:
                    for start in range(0, len(self.body), self.chunk_size):
                        chunk = self.body[start : start + self.chunk_size]
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def leaky_backend() -> AsyncIterator[LeakyBackend]:
    backend = LeakyBackend()
    async with listening(backend.serve) as backend.port:
        yield backend


def request(method: str, target: str, token: str | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.example:8080", "Connection: close"]
    if token is not None:
        lines.append(f"X-Auth-Token: {token}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return "\r\n".join([*lines, "", ""]).encode() + body


def assert_nothing_leaked(raw: bytes) -> dict[str, str]:
    """The response holds none of the leaked names or values; its headers."""
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert "LEAK-" not in raw.decode("latin-1"), head
    names = {line.partition(":")[0].lower().replace("_", "-") for line in head.split("\r\n")[1:]}
    for name, _ in LEAKED:
        assert name.lower().replace("_", "-") not in names, head
    return parse_response(raw).headers


def assert_allowed_passed(headers: dict[str, str]) -> None:
    for name, value in ALLOWED:
        assert headers[name.lower()] == value, headers


async def gateway_for(
    serve_gateway: ServeGateway, backend: LeakyBackend, **upstream: object
) -> int:
    gateway = await serve_gateway(
        backend.url,
        authorization={"policy_file": str(RACKSPACE_POLICY), "owner_check": "backend"},
        upstream=upstream,
    )
    return gateway.port


async def test_a_json_document_keeps_its_headers_but_no_identity(
    serve_gateway: ServeGateway, leaky_backend: LeakyBackend, token: TokenFactory
) -> None:
    port = await gateway_for(serve_gateway, leaky_backend)
    image = uuid.uuid4()
    leaky_backend.body = json.dumps({"id": str(image), "status": "active"}).encode()
    raw = await exchange(port, request("GET", f"/v2/images/{image}", token()))
    response = parse_response(raw)
    assert response.status == 200
    assert json.loads(response.body) == {"id": str(image), "status": "active"}
    headers = assert_nothing_leaked(raw)
    assert_allowed_passed(headers)
    assert headers["content-type"] == "application/json"
    # The gateway's own request id stands where the backend's would.
    assert headers["x-openstack-request-id"].startswith("req-")


async def test_a_created_images_location_passes_rewritten_but_no_identity(
    serve_gateway: ServeGateway, leaky_backend: LeakyBackend, token: TokenFactory
) -> None:
    port = await gateway_for(serve_gateway, leaky_backend)
    leaky_backend.status, leaky_backend.reason = 201, "Created"
    leaky_backend.location = "/v2/images/x"
    raw = await exchange(port, request("POST", "/v2/images", token(), b'{"name": "n"}'))
    assert parse_response(raw).status == 201
    headers = assert_nothing_leaked(raw)
    assert_allowed_passed(headers)
    assert headers["location"] == "http://gateway.example:8080/v2/images/x"


async def test_a_streamed_download_carries_no_identity(
    serve_gateway: ServeGateway, leaky_backend: LeakyBackend, token: TokenFactory
) -> None:
    port = await gateway_for(serve_gateway, leaky_backend)
    leaky_backend.content_type = "application/octet-stream"
    leaky_backend.body = bytes(range(256)) * 4096  # 1 MiB, in 64 KiB chunks
    leaky_backend.chunk_size = 65536
    raw = await exchange(port, request("GET", f"/v2/images/{uuid.uuid4()}/file", token()))
    assert parse_response(raw).status == 200
    headers = assert_nothing_leaked(raw)
    assert_allowed_passed(headers)
    assert headers["transfer-encoding"] == "chunked"
    assert len(raw) > len(leaky_backend.body)


async def test_an_error_passed_through_carries_no_identity(
    serve_gateway: ServeGateway, leaky_backend: LeakyBackend, token: TokenFactory
) -> None:
    port = await gateway_for(serve_gateway, leaky_backend, pass_through_errors=True)
    leaky_backend.status, leaky_backend.reason = 404, "Not Found"
    leaky_backend.content_type = "text/plain"
    leaky_backend.body = b"404 Not Found\n\nNo image found"
    raw = await exchange(port, request("GET", f"/v2/images/{uuid.uuid4()}", token()))
    response = parse_response(raw)
    assert response.status == 404
    assert response.body == leaky_backend.body
    assert_allowed_passed(assert_nothing_leaked(raw))


async def test_an_error_rewritten_into_a_fault_carries_no_identity(
    serve_gateway: ServeGateway, leaky_backend: LeakyBackend, token: TokenFactory
) -> None:
    port = await gateway_for(serve_gateway, leaky_backend)
    leaky_backend.status, leaky_backend.reason = 403, "Forbidden"
    leaky_backend.body = b'{"message": "You are not authorized"}'
    raw = await exchange(port, request("GET", f"/v2/images/{uuid.uuid4()}", token()))
    response = parse_response(raw)
    assert response.status == 403
    assert json.loads(response.body)["forbidden"]["message"] == "You are not authorized"
    assert_nothing_leaked(raw)


async def test_version_discovery_carries_no_identity(
    serve_gateway: ServeGateway, leaky_backend: LeakyBackend
) -> None:
    port = await gateway_for(serve_gateway, leaky_backend)
    leaky_backend.status, leaky_backend.reason = 300, "Multiple Choices"
    link = {"rel": "self", "href": f"{leaky_backend.url}/v2/"}
    leaky_backend.body = json.dumps({"versions": [{"id": "v2.17", "links": [link]}]}).encode()
    raw = await exchange(port, request("GET", "/versions", None))
    response = parse_response(raw)
    assert response.status == 300
    [version] = json.loads(response.body)["versions"]
    assert version["links"][0]["href"] == "http://gateway.example:8080/v2/"
    assert_allowed_passed(assert_nothing_leaked(raw))
