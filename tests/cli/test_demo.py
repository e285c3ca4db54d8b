"""``image-gateway demo`` brings its dashboard along, on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from tests.conftest import free_port
from tests.runtime.test_workers import DEADLINE_SECONDS, REPO, until

# The demo's banner ends with this line, printed once every listener is up.
BANNER_END = "Ctrl-C stops it."


@dataclass
class RunningDemo:
    port: int
    admin_port: int
    # What the demo printed: the tokens to export and the curl lines.
    banner: str = ""
    exit_code: int | None = None


async def _banner(stream: asyncio.StreamReader) -> str:
    lines = []
    while BANNER_END not in (line := (await stream.readline()).decode()):
        assert line, "the demo exited before printing its banner"
        lines.append(line)
    return "".join(lines)


@contextlib.asynccontextmanager
async def running_demo() -> AsyncIterator[RunningDemo]:
    """``python -m gateway demo`` on free ports, stopped with Ctrl-C (SIGINT) at the end."""
    demo = RunningDemo(free_port(), free_port())
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--port", str(demo.port),
        "--admin-port", str(demo.admin_port),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        demo.banner = await asyncio.wait_for(_banner(process.stdout), DEADLINE_SECONDS)
        yield demo
    finally:
        process.send_signal(signal.SIGINT)
        demo.exit_code = await asyncio.wait_for(process.wait(), DEADLINE_SECONDS)


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
