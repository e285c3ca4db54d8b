"""A drain an operator can follow in the log, started by SIGINT even when the
gateway was started with SIGINT ignored (a background job of a script).

``python -m gateway run`` is started the way a shell script's ``cmd &``
starts it: SIGINT ignored, inherited from the parent. SIGINT still stops
it, by the gateway's own handler: one line as the drain starts, with the
requests in flight, and one as it ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.gateway_config import config_data
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory
from tests.support.waiting import DEADLINE, until

IMAGE = "6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"


@dataclass
class HeldBackend:
    """A backend that holds each DELETE until released."""

    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "DELETE":
            return web.json_response({"owner": "project-a", "visibility": "private"})
        self.arrived.set()
        await self.release.wait()
        return web.Response(status=204)


@pytest.fixture
async def held() -> AsyncIterator[HeldBackend]:
    backend = HeldBackend()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", backend.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    backend.url = str(server.make_url("")).rstrip("/")
    yield backend
    backend.release.set()
    await server.close()


async def started_ignoring_sigint(config: dict[str, Any], directory: Path) -> GatewayProcess:
    """``run`` as a script's ``cmd &`` starts it: SIGINT ignored, inherited."""
    process = GatewayProcess.run(config, directory)
    process.sigint_ignored = True
    return await process.start()


def text_config(backend: str, keys: Keys, **listen: Any) -> dict[str, Any]:
    return config_data(
        backend,
        keys,
        listen={"host": "127.0.0.1", "port": free_port(), **listen},
        admin={"port": free_port()},
        logging={"level": "INFO", "format": "text"},
    )


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigint_drains_with_a_line_as_it_starts_and_as_it_ends(
    held: HeldBackend, keys: Keys, token: TokenFactory, tmp_path: Path, workers: int
) -> None:
    config = text_config(held.url, keys, workers=workers, shutdown_timeout=10)
    gateway = await started_ignoring_sigint(config, tmp_path)
    admin = f"http://127.0.0.1:{config['admin']['port']}"
    try:
        async with aiohttp.ClientSession() as client:

            async def ready() -> bool:
                # Every worker serving: readiness waits for each one's report.
                try:
                    return (await client.get(f"{admin}/readyz")).status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(ready, "every worker to serve")
            in_flight = asyncio.ensure_future(
                client.delete(
                    f"{gateway.url}/v2/images/{IMAGE}",
                    headers={"X-Auth-Token": token(roles=["admin"])},
                )
            )
            await asyncio.wait_for(held.arrived.wait(), DEADLINE)
            gateway.send_signal(signal.SIGINT)
            await until(lambda: "drain started: 1 request(s) in flight" in gateway.log(), "it")
            assert not in_flight.done()
            held.release.set()
            assert (await in_flight).status == 204
        exit_code = await gateway.wait()
    finally:
        held.release.set()
        await gateway.kill()
    assert exit_code == 0
    text = gateway.log()
    assert text.count("drain started") == workers
    assert text.count("drain ended after") == workers
    # The busy worker's drain ends after it started (another's may end before).
    started = text.index("drain started: 1 request(s) in flight")
    assert "every request finished" in text[started:]


async def test_a_drain_that_runs_out_of_time_says_how_many_requests_were_cut(
    held: HeldBackend, keys: Keys, token: TokenFactory, tmp_path: Path
) -> None:
    config = text_config(held.url, keys, shutdown_timeout=1)
    config["upstream"]["read_timeout"] = 30
    gateway = await started_ignoring_sigint(config, tmp_path)
    try:
        async with aiohttp.ClientSession() as client:
            never_answered = asyncio.ensure_future(
                client.delete(
                    f"{gateway.url}/v2/images/{IMAGE}",
                    headers={"X-Auth-Token": token(roles=["admin"])},
                )
            )
            await asyncio.wait_for(held.arrived.wait(), DEADLINE)
            exit_code = await gateway.stop(signal.SIGINT)
            with pytest.raises(aiohttp.ClientError):
                await never_answered
    finally:
        await gateway.kill()
    assert exit_code == 0
    [ended] = [line for line in gateway.log().splitlines() if "drain ended after" in line]
    assert ended.endswith("1 request(s) still running were cut")
    # listen.shutdown_timeout (1 s), then aiohttp's cancelling of what is left.
    assert float(ended.split("drain ended after ")[1].split("s:")[0]) < 5
