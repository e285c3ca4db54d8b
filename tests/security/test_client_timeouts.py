"""What one client may hold: a header deadline, an idle timeout.

Served as ``run`` serves it (the gateway's own protocol on a real port). The
connection cap and what gives way at it: tests/http/test_capacity.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

from gateway.app import GATEWAY
from gateway.config import ListenConfig
from tests.security.conftest import LiveGateway, RawBackend, exchange, parse_response
from tests.support.tokens import TokenFactory

ServeGateway = Callable[..., Awaitable[LiveGateway]]
HALF_A_REQUEST = b"GET /limits HTTP/1.1\r\nHost: g\r\nX-Auth-Token: abc"


def test_defaults_are_bounded() -> None:
    listen = ListenConfig()
    assert listen.header_read_timeout <= 30
    assert listen.keepalive_timeout <= 120
    assert listen.max_connections <= 4096


async def test_a_request_head_that_never_completes_is_cut_with_408(
    serve_gateway: ServeGateway, raw_backend: RawBackend
) -> None:
    gateway = await serve_gateway(
        raw_backend.url, listen={"header_read_timeout": 0.3, "keepalive_timeout": 30}
    )
    # Closed by the header deadline: the idle timeout (30 s) is past the read's.
    raw = await exchange(gateway.port, HALF_A_REQUEST, deadline=10)
    response = parse_response(raw)
    assert response.status == 408
    assert response.headers["x-openstack-request-id"].startswith("req-")
    assert b'"code": 408' in response.body
    assert gateway.app[GATEWAY].client_limits.header_timeouts == 1


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    serve_gateway: ServeGateway, raw_backend: RawBackend
) -> None:
    gateway = await serve_gateway(
        raw_backend.url, listen={"header_read_timeout": 30, "keepalive_timeout": 0.3}
    )
    # Never a byte sent; and idle after one complete request.
    assert await exchange(gateway.port, b"", deadline=10) == b""
    request = b"GET /limits HTTP/1.1\r\nHost: g\r\n\r\n"
    raw = await exchange(gateway.port, request, deadline=10)
    assert parse_response(raw).status == 401


async def test_slowloris_does_not_stop_legitimate_requests(
    serve_gateway: ServeGateway, raw_backend: RawBackend, token: TokenFactory
) -> None:
    """Slow clients arrive faster than the cap allows them to pile up, and keep
    trickling bytes; the header deadline cuts each of them, so the cap is never
    reached and every legitimate request is answered. Without the deadline the
    slow connections would fill the cap within the first second."""
    gateway = await serve_gateway(
        raw_backend.url,
        listen={
            "header_read_timeout": 0.3,
            "keepalive_timeout": 30,
            "max_connections": 100,
            # One host: the deadline alone, without the per-client cap.
            "max_unfinished_heads_per_client": 100,
        },
    )
    attack_seconds = 3.0
    stop = asyncio.Event()

    async def slow_client() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        except OSError:
            return
        try:
            writer.write(HALF_A_REQUEST)
            while not reader.at_eof():
                writer.write(b"a")
                try:
                    async with asyncio.timeout(0.1):  # the attacker's pace
                        await reader.read(4096)
                except TimeoutError:
                    continue
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def attack() -> None:
        clients = set()
        while not stop.is_set():
            clients.add(asyncio.create_task(slow_client()))
            await asyncio.sleep(0.01)  # ~100 new slow connections a second
        await asyncio.wait(clients, timeout=10)

    attacker = asyncio.create_task(attack())
    statuses = []
    headers = {"X-Auth-Token": token()}
    deadline = time.monotonic() + attack_seconds
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while time.monotonic() < deadline:
            async with session.get(f"http://127.0.0.1:{gateway.port}/limits", headers=headers) as r:
                statuses.append(r.status)
            await asyncio.sleep(0.02)  # a steady, modest legitimate load
    stop.set()
    await attacker
    limits = gateway.app[GATEWAY].client_limits
    assert len(statuses) > 20
    assert set(statuses) == {200}
    assert limits.refused_connections == 0
    # The attack happened, and was cut by the deadline: well past the cap in total.
    assert limits.header_timeouts > 150
