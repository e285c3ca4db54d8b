"""``image-gateway demo`` brings its dashboard along, on its own port."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp

from tests.conftest import free_port
from tests.runtime.test_workers import DEADLINE_SECONDS, REPO, until


async def test_demo_serves_the_dashboard_next_to_the_gateway() -> None:
    port, admin_port = free_port(), free_port()
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--port", str(port),
        "--admin-port", str(admin_port),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        async with aiohttp.ClientSession() as client:

            async def healthy() -> bool:
                try:
                    return (await client.get(f"{admin}/healthz")).status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(healthy, "the demo's admin listener")
            image = "6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"
            refused = await client.delete(f"http://127.0.0.1:{port}/images/{image}")
            assert refused.status == 401
            request_id = refused.headers["X-OpenStack-Request-Id"]
            page = await client.get(f"{admin}/decisions?q={request_id}")
            assert page.status == 200
            assert request_id in await page.text()
    finally:
        demo.send_signal(signal.SIGINT)
        exit_code = await asyncio.wait_for(demo.wait(), DEADLINE_SECONDS)
    assert exit_code == 0
    assert demo.stdout is not None
    banner = (await demo.stdout.read()).decode()
    assert f"Dashboard, metrics and probes: http://127.0.0.1:{admin_port}/" in banner
