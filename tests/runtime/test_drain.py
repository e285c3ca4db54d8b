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
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import Keys, TokenFactory, config_data, free_port
from tests.runtime.test_workers import DEADLINE_SECONDS, REPO, until

IMAGE = "6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"


def ignore_sigint() -> None:
    """In the child before exec: what ``cmd &`` in a non-interactive shell does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


async def start_ignoring_sigint(command: list[str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as output:
        return await asyncio.create_subprocess_exec(
            *command, cwd=REPO, stdout=output, stderr=output, preexec_fn=ignore_sigint
        )


async def logged(log: Path, text: str) -> bool:
    return text in log.read_text()  # noqa: ASYNC240 (a few lines, read while polling)


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigint_drains_with_a_line_as_it_starts_and_as_it_ends(
    held: HeldBackend, keys: Keys, token: TokenFactory, tmp_path: Path, workers: int
) -> None:
    port, admin_port = free_port(), free_port()
    config = config_data(
        held.url,
        keys,
        listen={"host": "127.0.0.1", "port": port, "workers": workers, "shutdown_timeout": 10},
        admin={"port": admin_port},
        logging={"level": "INFO", "format": "text"},
    )
    config_file, log = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
    config_file.write_text(yaml.safe_dump(config))
    gateway = await start_ignoring_sigint(
        [sys.executable, "-m", "gateway", "run", "--config", str(config_file)], log
    )
    url = f"http://127.0.0.1:{port}/v2/images/{IMAGE}"
    try:
        async with aiohttp.ClientSession() as client:

            async def accepting() -> bool:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/probe")).status == 404
                except aiohttp.ClientConnectionError:
                    return False

            async def ready() -> bool:
                # Every worker serving: readiness waits for each one's report.
                try:
                    readyz = f"http://127.0.0.1:{admin_port}/readyz"
                    return (await client.get(readyz)).status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(accepting, "the gateway to listen")
            await until(ready, "every worker to serve")
            in_flight = asyncio.ensure_future(
                client.delete(url, headers={"X-Auth-Token": token(roles=["admin"])})
            )
            await asyncio.wait_for(held.arrived.wait(), DEADLINE_SECONDS)
            gateway.send_signal(signal.SIGINT)
            await until(lambda: logged(log, "drain started: 1 request(s) in flight"), "the start")
            assert not in_flight.done()
            held.release.set()
            assert (await in_flight).status == 204
        exit_code = await asyncio.wait_for(gateway.wait(), DEADLINE_SECONDS)
    finally:
        held.release.set()
        if gateway.returncode is None:
            gateway.kill()
            await gateway.wait()
    assert exit_code == 0
    text = log.read_text()
    assert text.count("drain started") == workers
    assert text.count("drain ended after") == workers
    # The busy worker's drain ends after it started (another's may end before).
    started = text.index("drain started: 1 request(s) in flight")
    assert "every request finished" in text[started:]


async def test_a_drain_that_runs_out_of_time_says_how_many_requests_were_cut(
    held: HeldBackend, keys: Keys, token: TokenFactory, tmp_path: Path
) -> None:
    port = free_port()
    config = config_data(
        held.url,
        keys,
        listen={"host": "127.0.0.1", "port": port, "shutdown_timeout": 1},
        upstream={"read_timeout": 30},
        admin={"port": free_port()},
        logging={"level": "INFO", "format": "text"},
    )
    config_file, log = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
    config_file.write_text(yaml.safe_dump(config))
    gateway = await start_ignoring_sigint(
        [sys.executable, "-m", "gateway", "run", "--config", str(config_file)], log
    )
    try:
        async with aiohttp.ClientSession() as client:

            async def accepting() -> bool:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/probe")).status == 404
                except aiohttp.ClientConnectionError:
                    return False

            await until(accepting, "the gateway to listen")
            never_answered = asyncio.ensure_future(
                client.delete(
                    f"http://127.0.0.1:{port}/v2/images/{IMAGE}",
                    headers={"X-Auth-Token": token(roles=["admin"])},
                )
            )
            await asyncio.wait_for(held.arrived.wait(), DEADLINE_SECONDS)
            gateway.send_signal(signal.SIGINT)
            exit_code = await asyncio.wait_for(gateway.wait(), DEADLINE_SECONDS)
            with pytest.raises(aiohttp.ClientError):
                await never_answered
    finally:
        if gateway.returncode is None:
            gateway.kill()
            await gateway.wait()
    assert exit_code == 0
    [ended] = [line for line in log.read_text().splitlines() if "drain ended after" in line]
    assert ended.endswith("1 request(s) still running were cut")
    # listen.shutdown_timeout (1 s), then aiohttp's cancelling of what is left.
    assert float(ended.split("drain ended after ")[1].split("s:")[0]) < 5
