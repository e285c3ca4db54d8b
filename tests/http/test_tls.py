"""TLS to the backend: a private CA, a client certificate (mTLS), and what is refused.

Real certificates (trustme), a real HTTPS backend on a free port, the whole
gateway in front of it; each test runs on asyncio's loop and uvloop.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.http.tls import ListenerCertificate, TlsFilesError, client_context
from tests.support.certificates import Issued, PrivateCa
from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory

IMAGE = "/v2/images/6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"


@dataclass
class Backend:
    """An HTTPS backend; it records the client certificate each request came with."""

    url: str = ""
    peers: list[dict[str, Any] | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peercert"))
        if request.method == "GET":  # the gateway's owner look-up
            return web.json_response({"owner": "project-a", "visibility": "private"})
        return web.Response(status=204)


HttpsBackend = Callable[..., Awaitable[Backend]]


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCa:
    return PrivateCa(tmp_path, "backend-ca")


@pytest.fixture
async def https_backend() -> AsyncIterator[HttpsBackend]:
    servers: list[TestServer] = []

    async def start(context: ssl.SSLContext) -> Backend:
        backend = Backend()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", backend.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(ssl=context)
        servers.append(server)
        backend.url = f"https://127.0.0.1:{server.port}"
        return backend

    yield start
    for server in servers:
        await server.close()


async def test_the_gateway_reaches_a_backend_behind_mtls_with_a_private_ca(
    make_gateway: GatewayFactory,
    https_backend: HttpsBackend,
    ca: PrivateCa,
    tmp_path: Path,
    token: TokenFactory,
) -> None:
    clients = PrivateCa(tmp_path, "client-ca")
    ours = clients.issue("image-gateway.example")
    backend = await https_backend(ca.server_context(ca.issue("127.0.0.1"), client_ca=clients))
    tls = {"ca_file": str(ca.ca_file), "cert_file": str(ours.cert_file),
           "key_file": str(ours.key_file)}  # fmt: skip
    gateway = await make_gateway(backend.url, upstream={"tls": tls})

    response = await gateway.delete(IMAGE, headers={"X-Auth-Token": token()})

    assert response.status == 204
    # The backend saw the gateway's own certificate (the look-up's and the DELETE's).
    assert backend.peers
    for peer in backend.peers:
        assert peer is not None
        assert ("DNS", "image-gateway.example") in peer["subjectAltName"]


async def test_without_the_client_certificate_the_backend_refuses_and_the_caller_gets_503(
    make_gateway: GatewayFactory,
    https_backend: HttpsBackend,
    ca: PrivateCa,
    tmp_path: Path,
    token: TokenFactory,
) -> None:
    clients = PrivateCa(tmp_path, "client-ca")
    backend = await https_backend(ca.server_context(ca.issue("127.0.0.1"), client_ca=clients))
    gateway = await make_gateway(backend.url, upstream={"tls": {"ca_file": str(ca.ca_file)}})

    response = await gateway.delete(IMAGE, headers={"X-Auth-Token": token()})

    assert response.status == 503
    assert (await response.json())["serviceUnavailable"]["code"] == 503
    assert backend.peers == []


async def test_a_certificate_from_another_ca_is_refused_with_a_503_fault_and_a_log_line(
    make_gateway: GatewayFactory,
    https_backend: HttpsBackend,
    ca: PrivateCa,
    tmp_path: Path,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    backend = await https_backend(ca.server_context(ca.issue("127.0.0.1")))
    other = PrivateCa(tmp_path, "another-ca")
    gateway = await make_gateway(backend.url, upstream={"tls": {"ca_file": str(other.ca_file)}})

    response = await gateway.delete(IMAGE, headers={"X-Auth-Token": token()})

    assert response.status == 503
    fault = (await response.json())["serviceUnavailable"]
    assert fault["details"] == "The image service's TLS connection was refused."
    assert backend.peers == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "certificate verify failed" in logged
    assert "unable to get local issuer certificate" in logged


async def test_an_expired_backend_certificate_is_refused(
    make_gateway: GatewayFactory,
    https_backend: HttpsBackend,
    ca: PrivateCa,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    backend = await https_backend(ca.server_context(ca.issue("127.0.0.1", expired=True)))
    gateway = await make_gateway(backend.url, upstream={"tls": {"ca_file": str(ca.ca_file)}})

    response = await gateway.delete(IMAGE, headers={"X-Auth-Token": token()})

    assert response.status == 503
    assert backend.peers == []
    assert "certificate has expired" in "\n".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("verify_hostname", "status"), [(True, 503), (False, 204)])
async def test_the_certificate_must_name_the_host_unless_told_otherwise(
    make_gateway: GatewayFactory,
    https_backend: HttpsBackend,
    ca: PrivateCa,
    token: TokenFactory,
    verify_hostname: bool,
    status: int,
) -> None:
    backend = await https_backend(ca.server_context(ca.issue("images.example")))
    tls = {"ca_file": str(ca.ca_file), "verify_hostname": verify_hostname}
    gateway = await make_gateway(backend.url, upstream={"tls": tls})

    response = await gateway.delete(IMAGE, headers={"X-Auth-Token": token()})

    assert response.status == status


def test_a_key_that_is_not_the_certificates_does_not_load(ca: PrivateCa) -> None:
    first, second = ca.issue("a.example"), ca.issue("b.example")
    with pytest.raises(TlsFilesError, match="key values mismatch"):
        client_context(ca.ca_file, first.cert_file, second.key_file)
    with pytest.raises(TlsFilesError, match="key values mismatch"):
        ListenerCertificate(first.cert_file, second.key_file)


def test_a_listener_certificate_that_no_longer_loads_keeps_the_current_one(
    ca: PrivateCa, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = ca.issue("localhost", into=tmp_path, stem="listener")
    certificate = ListenerCertificate(served.cert_file, served.key_file)
    # A rotation half done: the new certificate, the old key.
    rotated: Issued = ca.issue("localhost", into=tmp_path, stem="next")
    rotated.cert_file.replace(served.cert_file)

    assert not certificate.reload()

    assert "listener certificate not reloaded" in caplog.text
    assert certificate.context.minimum_version == ssl.TLSVersion.TLSv1_2
