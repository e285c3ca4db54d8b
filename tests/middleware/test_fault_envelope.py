"""An internal error becomes a 500 apiFault: logged with its traceback and
request id, and nothing of it reaches the client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.http.protocol import ClientLimits
from gateway.middleware.fault_envelope import FaultEnvelopeMiddleware
from gateway.middleware.request_id import RequestIdMiddleware
from gateway.ratelimit.store import LimitCheck, Verdict
from gateway.runtime.server import start_site
from tests.support.faults import assert_fault
from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory


class BrokenStore:
    """A store with a bug in it, plugged in through the store interface."""

    async def acquire(self, checks: Sequence[LimitCheck]) -> Verdict:
        raise ZeroDivisionError("secret internal detail")

    async def peek(self, checks: Sequence[LimitCheck]) -> Verdict:
        raise ZeroDivisionError("secret internal detail")

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_internal_error_is_500_api_fault(
    make_gateway: GatewayFactory,
    store_server: TestServer,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_gateway(str(store_server.make_url("")).rstrip("/"), store=BrokenStore())
    with caplog.at_level(logging.ERROR, logger="gateway.http.faults"):
        response = await client.delete(
            "/v2/images/8b5e1f8e-9d1c-4a5c-9f0e-3d0f6f1f2a3b", headers={"X-Auth-Token": token()}
        )
    body = await assert_fault(response, 500, "apiFault")
    text = await response.text()
    assert "secret internal detail" not in text
    assert "Traceback" not in text
    request_id = response.headers["X-Compute-Request-Id"]
    assert request_id in body["details"]
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


async def test_a_body_whose_framing_breaks_mid_read_is_400_not_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The chain is reading the body when a bad chunk size arrives: on the
    gateway's protocol the reader gets the error (aiohttp alone would leave
    it waiting), and the fault envelope makes it a 400."""
    reading = asyncio.Event()

    async def read_body(request: web.Request) -> web.Response:
        reading.set()
        await request.read()
        return web.Response(status=204)

    app = web.Application(middlewares=[RequestIdMiddleware(), FaultEnvelopeMiddleware()])
    app.router.add_post("/", read_body)
    runner = await start_site(app, "127.0.0.1", 0, limits=ClientLimits(5.0, 5.0, 10))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"POST / HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"3\r\nabc\r\n")
        await asyncio.wait_for(reading.wait(), 5)
        with caplog.at_level(logging.INFO):
            writer.write(b"zz-SECRET\r\n")
            answer = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
    finally:
        await runner.cleanup()
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"X-OpenStack-Request-Id: req-" in answer
    assert b"badRequest" in answer
    assert b"SECRET" not in answer
    assert not [r for r in caplog.records if r.exc_info or "SECRET" in r.getMessage()]


async def test_a_refused_path_is_logged_as_sent_never_decoded(
    make_gateway: GatewayFactory, store_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A path that decodes to a line break would forge a line in a text log."""
    client = await make_gateway(str(store_server.make_url("")).rstrip("/"))
    with caplog.at_level(logging.INFO, logger="gateway.http.faults"):
        response = await client.get("/v2/nothing%0d%0a2026-12-06%20ERROR%20forged%00")
    await assert_fault(response, 404, "itemNotFound")
    request_id = response.headers["X-Compute-Request-Id"]
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    message = record.getMessage()
    assert message.startswith("GET /v2/nothing%0D%0A2026-12-06%20ERROR%20forged%00 -> 404")
    assert not {"\r", "\n", "\0"} & set(message)
