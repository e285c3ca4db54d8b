"""``image-gateway demo`` brings its dashboard along, on its own port."""

from __future__ import annotations

import contextlib
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.ports import free_port
from tests.support.waiting import until

# The demo's banner ends with this line, printed once every listener is up.
BANNER_END = "Ctrl-C stops it."


@dataclass
class RunningDemo:
    port: int
    admin_port: int
    # What the demo printed: the tokens to export and the curl lines.
    banner: str = ""
    exit_code: int | None = None


def _banner(printed: str) -> str | None:
    """What the demo printed before the line that ends its banner, once that line is there."""
    end = printed.find(BANNER_END)
    return None if end < 0 else printed[: printed.rfind("\n", 0, end) + 1]


@contextlib.asynccontextmanager
async def running_demo() -> AsyncIterator[RunningDemo]:
    """``python -m gateway demo`` on free ports, stopped with Ctrl-C (SIGINT) at the end."""
    demo = RunningDemo(free_port(), free_port())
    arguments = ("demo", "--port", str(demo.port), "--admin-port", str(demo.admin_port))
    with tempfile.TemporaryDirectory(prefix="demo-") as directory:
        process = await GatewayProcess(arguments, demo.port, Path(directory), "demo").start()
        try:
            demo.banner = await until(lambda: _banner(process.output()), "the demo's banner")
            yield demo
        finally:
            demo.exit_code = await process.stop(signal.SIGINT)


async def test_demo_serves_the_dashboard_next_to_the_gateway() -> None:
    async with running_demo() as demo, aiohttp.ClientSession() as client:
        admin = f"http://127.0.0.1:{demo.admin_port}"

        async def healthy() -> bool:
            try:
                return (await client.get(f"{admin}/healthz")).status == 200
            except aiohttp.ClientConnectionError:
                return False

        await until(healthy, "the demo's admin listener")
        image = "6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"
        refused = await client.delete(f"http://127.0.0.1:{demo.port}/images/{image}")
        assert refused.status == 401
        request_id = refused.headers["X-OpenStack-Request-Id"]
        page = await client.get(f"{admin}/decisions?q={request_id}")
        assert page.status == 200
        assert request_id in await page.text()
    assert demo.exit_code == 0
    assert f"Dashboard, metrics and probes: http://127.0.0.1:{demo.admin_port}/" in demo.banner


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_the_demo_started_with_sigint_ignored_stops_on_sigint_and_on_sigterm(
    signum: int, tmp_path: Path
) -> None:
    port, admin_port = free_port(), free_port()
    arguments = ("demo", "--port", str(port), "--admin-port", str(admin_port))
    process = GatewayProcess(arguments, port, tmp_path, "demo", sigint_ignored=True)
    await process.start()
    try:
        await until(lambda: _banner(process.output()), "the demo's banner")
    finally:
        exit_code = await process.stop(signum)
    assert exit_code == 0
    assert "drain started: 0 request(s) in flight" in process.log()
    assert "drain ended after" in process.log()
