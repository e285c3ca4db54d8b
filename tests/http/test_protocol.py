"""The server under the chain: a reload puts a new app behind the same socket,
and the old app's requests finish before it is shut down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.http.protocol import ClientLimits, GatewayRunner, GatewayServer
from tests.support.ports import free_port


class Held:
    """An app whose every request waits until released, and that says whether
    it was shut down."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.shut_down = False
        self.app = web.Application()
        self.app.router.add_get("/", self.handle)
        self.app.on_shutdown.append(self._shutdown)

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived.set()
        await self.release.wait()
        return web.Response(text=self.name)

    async def _shutdown(self, app: web.Application) -> None:
        self.shut_down = True


@pytest.fixture
async def served() -> AsyncIterator[tuple[GatewayRunner, Held, str]]:
    old = Held("old")
    limits = ClientLimits(header_read_timeout=5, keepalive_timeout=5, max_connections=100)
    runner = GatewayRunner(old.app, limits)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield runner, old, f"http://127.0.0.1:{port}/"
    old.release.set()
    await runner.cleanup()


async def test_a_swap_waits_for_the_old_apps_requests_while_the_new_app_serves(
    served: tuple[GatewayRunner, Held, str],
) -> None:
    runner, old, url = served
    new = Held("new")
    new.release.set()
    async with aiohttp.ClientSession() as session:
        first = asyncio.ensure_future(session.get(url))
        await old.arrived.wait()
        swap = asyncio.ensure_future(runner.swap(new.app, drain_timeout=30))
        # The new app answers while the old one still holds its request.
        async with session.get(url) as response:
            assert await response.text() == "new"
        server = runner.server
        assert isinstance(server, GatewayServer)
        assert server.in_flight == 1
        assert not swap.done()
        assert not old.shut_down
        old.release.set()
        async with await first as response:
            assert await response.text() == "old"
        await swap
    assert old.shut_down
    assert server.in_flight == 0


async def test_a_swap_gives_up_on_the_old_app_after_its_drain_timeout(
    served: tuple[GatewayRunner, Held, str], caplog: pytest.LogCaptureFixture
) -> None:
    runner, old, url = served
    new = Held("new")
    async with aiohttp.ClientSession() as session:
        first = asyncio.ensure_future(session.get(url))
        await old.arrived.wait()
        await runner.swap(new.app, drain_timeout=0.2)
        assert old.shut_down
        assert "still running after 0.2s" in caplog.text
        first.cancel()
