"""Worker processes and the one admin listener that sees all of them.

``python -m gateway run`` with one worker and with two, in front of a real
upstream: after N deletes (a new connection each, so SO_REUSEPORT hands
them to either worker), /metrics counts N, and the dashboard and the audit
file show N decisions from as many processes as there are workers; SIGTERM
stops it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.gateway_config import config_data
from tests.support.gateway_process import GatewayProcess
from tests.support.observed import sample_value
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory
from tests.support.waiting import DEADLINE, until

DELETES = 40


async def backend_answers(request: web.Request) -> web.Response:
    return web.Response(status=204 if request.method == "DELETE" else 200)


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", backend_answers)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.mark.parametrize("workers", [1, 2])
async def test_every_worker_is_counted_as_one_gateway(
    backend: str, keys: Keys, token: TokenFactory, tmp_path: Path, workers: int
) -> None:
    port, admin_port = free_port(), free_port()
    audit = tmp_path / "audit.jsonl"
    config = config_data(
        backend,
        keys,
        listen={"host": "127.0.0.1", "port": port, "workers": workers, "shutdown_timeout": 2},
        admin={"port": admin_port},
        audit={"sink": str(audit)},
        logging={"level": "WARNING"},
    )
    parent = await GatewayProcess.run(config, tmp_path).start()
    proxy, admin = parent.url, f"http://127.0.0.1:{admin_port}"
    fresh = aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=fresh) as client:

            async def get(url: str) -> aiohttp.ClientResponse | None:
                try:
                    response = await client.get(url)
                    await response.read()
                    return response
                except aiohttp.ClientConnectionError:
                    return None

            async def decisions() -> list[dict[str, Any]]:
                response = await client.get(f"{admin}/api/decisions?limit=500")
                return list((await response.json())["decisions"])

            async def every_worker_answers() -> bool:
                # Unknown path: answered by whichever worker, not a delete.
                await get(f"{proxy}/probe")
                return len({d["pid"] for d in await decisions()}) == workers

            await until(lambda: get(f"{admin}/healthz"), "the admin listener")
            await until(every_worker_answers, "every worker to answer")

            admin_token = token(roles=["admin"])
            image = "6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"
            for _ in range(DELETES):
                response = await client.delete(
                    f"{proxy}/v2/images/{image}", headers={"X-Auth-Token": admin_token}
                )
                assert response.status == 204

            # One scrape, at once: the workers' counts as of now, mirrored
            # ones (the token cache) included, then the dashboard, which the
            # scrape brought up to date too.
            text = await (await client.get(f"{admin}/metrics")).text()
            assert sample_value(text, "gateway_requests_total", route="delete_image") == DELETES
            assert sample_value(text, "gateway_token_cache_lookups_total") == DELETES
            seen = [d for d in await decisions() if d["route"] == "delete_image"]
            assert len(seen) == DELETES
            assert len({d["pid"] for d in seen}) == workers

            readiness = await (await client.get(f"{admin}/readyz")).json()
            assert readiness["ready"] is True
            if workers > 1:
                alive = {
                    "ok": True,
                    "status": "ok",
                    "detail": f"{workers} of {workers} worker(s) alive",
                }
                assert readiness["checks"]["workers"] == alive
    finally:
        exit_code = await parent.stop()
    assert exit_code == 0
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(records) == DELETES
    assert {r["outcome"] for r in records} == {"deleted"}
    assert len({r["pid"] for r in records}) == workers


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_turns_readiness_false_while_in_flight_requests_finish(
    keys: Keys, token: TokenFactory, tmp_path: Path, workers: int
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held_delete(request: web.Request) -> web.Response:
        if request.method != "DELETE":
            return web.Response(status=200)
        arrived.set()
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", held_delete)
    backend = TestServer(app, host="127.0.0.1")
    await backend.start_server()
    port, admin_port = free_port(), free_port()
    config = config_data(
        str(backend.make_url("")).rstrip("/"),
        keys,
        listen={"host": "127.0.0.1", "port": port, "workers": workers, "shutdown_timeout": 10},
        admin={"port": admin_port},
        logging={"level": "WARNING"},
    )
    parent = await GatewayProcess.run(config, tmp_path).start()
    readyz = f"http://127.0.0.1:{admin_port}/readyz"
    image = "6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"
    try:
        async with aiohttp.ClientSession() as client:

            async def status_of(url: str) -> int | None:
                try:
                    return (await client.get(url)).status
                except aiohttp.ClientConnectionError:
                    return None

            await until(lambda: _is(status_of(readyz), 200), "readiness")
            in_flight = asyncio.ensure_future(
                client.delete(
                    f"http://127.0.0.1:{port}/v2/images/{image}",
                    headers={"X-Auth-Token": token(roles=["admin"])},
                )
            )
            await asyncio.wait_for(arrived.wait(), DEADLINE)
            parent.send_signal(signal.SIGTERM)
            await until(lambda: _is(status_of(readyz), 503), "readiness to go false")
            report = await (await client.get(readyz)).json()
            assert report["draining"] is True
            # Unready, and the request that was already here is still served.
            assert not in_flight.done()
            release.set()
            assert (await in_flight).status == 204
        exit_code = await parent.wait()
        assert exit_code == 0
    finally:
        release.set()
        await parent.kill()
        await backend.close()


async def _is(status: Awaitable[int | None], expected: int) -> bool:
    return await status == expected


def _workers_of(pid: int) -> set[int]:
    """The worker processes of a gateway, from /proc (Linux): its spawned
    children, apart from multiprocessing's resource tracker."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.update(int(c) for c in (task / "children").read_text().split())
    workers = set()
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command and b"resource_tracker" not in command:
                workers.add(child)
    return workers


async def test_a_worker_that_dies_is_replaced(
    backend: str, keys: Keys, token: TokenFactory, tmp_path: Path
) -> None:
    port, admin_port = free_port(), free_port()
    config = config_data(
        backend,
        keys,
        listen={"host": "127.0.0.1", "port": port, "workers": 2},
        admin={"port": admin_port},
        logging={"level": "WARNING"},
    )
    parent = await GatewayProcess.run(config, tmp_path).start()
    readyz = f"http://127.0.0.1:{admin_port}/readyz"
    try:
        async with aiohttp.ClientSession() as client:

            async def workers_alive() -> str | None:
                try:
                    report = await (await client.get(readyz)).json()
                except aiohttp.ClientError:
                    return None
                return str(report["checks"]["workers"]["detail"])

            async def two_workers() -> set[int] | None:
                if await workers_alive() != "2 of 2 worker(s) alive":
                    return None
                workers = _workers_of(parent.pid)
                return workers if len(workers) == 2 else None

            async def accepting() -> bool:
                try:
                    probe = await client.get(f"http://127.0.0.1:{port}/probe")
                except aiohttp.ClientConnectionError:
                    return False
                return probe.status == 404

            before = await until(two_workers, "two workers")
            victim = max(before)
            os.kill(victim, signal.SIGKILL)
            after = await until(
                lambda: _replaced(two_workers(), victim), "the dead worker to be replaced"
            )
            assert victim not in after
            assert len(after - before) == 1
            await until(accepting, "the gateway to listen again")

            async def served() -> bool:
                response = await client.delete(
                    f"http://127.0.0.1:{port}/v2/images/{uuid.uuid4()}",
                    headers={"X-Auth-Token": token(roles=["admin"]), "Connection": "close"},
                )
                return response.status == 204

            assert all([await served() for _ in range(10)])
        assert await parent.stop() == 0
    finally:
        await parent.kill()


async def _replaced(children: Awaitable[set[int] | None], victim: int) -> set[int] | None:
    pids = await children
    return pids if pids is not None and victim not in pids else None


UNDER_LOAD = 400
CONCURRENT = 50


async def test_every_audit_record_is_written_and_fed_under_load(
    backend: str, keys: Keys, token: TokenFactory, tmp_path: Path
) -> None:
    """Concurrent deletes on kept connections, two workers: nothing the operator sees is lost.

    The workers batch what they feed the dashboard and count in their own
    memory, summed at scrape time; every record still reaches the audit file,
    /metrics and the dashboard, once.
    """
    port, admin_port = free_port(), free_port()
    audit = tmp_path / "audit.jsonl"
    config = config_data(
        backend,
        keys,
        listen={"host": "127.0.0.1", "port": port, "workers": 2, "shutdown_timeout": 2},
        admin={"port": admin_port},
        audit={"sink": str(audit)},
        logging={"level": "WARNING"},
    )
    parent = await GatewayProcess.run(config, tmp_path).start()
    proxy, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    admin_token = token(roles=["admin"])
    try:
        async with aiohttp.ClientSession() as client:

            async def both_workers_answer() -> bool:
                # A new connection each time, so either worker may take it.
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    await client.get(f"{proxy}/probe", headers={"Connection": "close"})
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    response = await client.get(f"{admin}/api/decisions?limit=500")
                    return len({d["pid"] for d in (await response.json())["decisions"]}) == 2
                return False

            await until(both_workers_answer, "both workers to answer")
            queue: asyncio.Queue[str] = asyncio.Queue()
            for _ in range(UNDER_LOAD):
                queue.put_nowait(str(uuid.uuid4()))

            async def deleter() -> list[str]:
                ids = []
                while not queue.empty():
                    image = queue.get_nowait()
                    response = await client.delete(
                        f"{proxy}/v2/images/{image}", headers={"X-Auth-Token": admin_token}
                    )
                    assert response.status == 204
                    ids.append(response.headers["X-OpenStack-Request-Id"])
                return ids

            sent = [
                i
                for ids in await asyncio.gather(*(deleter() for _ in range(CONCURRENT)))
                for i in ids
            ]
            assert len(set(sent)) == UNDER_LOAD

            # Exact at the first scrape, which also brings the dashboard up to date.
            text = await (await client.get(f"{admin}/metrics")).text()
            assert sample_value(text, "gateway_requests_total", route="delete_image") == UNDER_LOAD
            response = await client.get(f"{admin}/api/audit?limit={UNDER_LOAD + 100}")
            trail = list((await response.json())["audit"])
            assert sorted(r["request_id"] for r in trail) == sorted(sent)
    finally:
        assert await parent.stop() == 0
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert sorted(r["request_id"] for r in records) == sorted(sent)
    assert len({r["pid"] for r in records}) == 2
