"""Signals as operators expect them (nginx, HAProxy, Envoy), on ``python -m gateway run``.

SIGHUP reloads the configuration (keys and policy with it) with no request
failing, and refuses a file that does not validate; SIGUSR1 is no way to
kill it; workers go when their supervisor goes, even by SIGKILL; a worker
started again serves the configuration its supervisor validated, whatever
the file says by then.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support.gateway_config import config_data
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory
from tests.support.waiting import until


def limits_config(
    keys: Keys, backend: str, port: int, admin_port: int, value: int, workers: int
) -> dict[str, Any]:
    rule = {
        "name": "deletes",
        "path": "^/(v2/)?images/",
        "methods": ["DELETE"],
        "unit": "minute",
        "value": value,
    }
    return config_data(
        backend,
        keys,
        listen={"host": "127.0.0.1", "port": port, "workers": workers, "shutdown_timeout": 5},
        admin={"port": admin_port},
        rate_limit={"rules": [rule]},
        logging={"level": "INFO", "format": "text"},
    )


@dataclass
class Running:
    process: GatewayProcess
    admin_port: int
    session: aiohttp.ClientSession
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.process.config_file

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def url(self) -> str:
        return self.process.url

    async def limit(self) -> int | None:
        """The 'deletes' value GET /limits reports, or None when it did not answer 200."""
        try:
            async with self.session.get(f"{self.url}/limits", headers=self.headers) as r:
                if r.status != 200:
                    return None
                body = await r.json()
        except aiohttp.ClientError:
            return None
        return int(body["limits"]["rate"][0]["limit"][0]["value"])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)


@pytest.fixture
async def start(
    keys: Keys, token: TokenFactory, tmp_path: Path
) -> AsyncIterator[Callable[[int], Awaitable[Running]]]:
    started: list[Running] = []
    connector = aiohttp.TCPConnector(force_close=True)
    session = aiohttp.ClientSession(connector=connector)

    async def run(workers: int) -> Running:
        port, admin_port = free_port(), free_port()
        data = limits_config(keys, "http://127.0.0.1:1", port, admin_port, 100, workers)
        process = GatewayProcess.run(data, tmp_path)
        running = Running(process, admin_port, session, {"X-Auth-Token": token(roles=["admin"])})
        started.append(running)
        await process.start()
        await until(running.limit, "the gateway to serve")
        return running

    yield run
    for running in started:
        await running.process.stop()
    await session.close()


def rewrite(running: Running, keys: Keys, value: int, workers: int) -> None:
    data = limits_config(
        keys, "http://127.0.0.1:1", running.port, running.admin_port, value, workers
    )
    running.config_file.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_reloads_under_load_with_no_failed_request(
    start: Callable[[int], Awaitable[Running]], keys: Keys, workers: int
) -> None:
    running = await start(workers)
    failures: list[str] = []
    answered = 0
    stop = asyncio.Event()

    async def client() -> None:
        nonlocal answered
        while not stop.is_set():
            if await running.limit() is None:
                failures.append("a request failed")
            answered += 1

    clients = [asyncio.create_task(client()) for _ in range(8)]
    for value in (200, 300, 400):
        rewrite(running, keys, value, workers)
        running.signal(signal.SIGHUP)

        async def every_connection_sees(value: int = value) -> bool:
            # Fresh connections land on either worker: all must see it.
            seen = {await running.limit() for _ in range(10)}
            return seen == {value}

        await until(every_connection_sees, f"the reload to {value}")
    stop.set()
    await asyncio.gather(*clients)
    assert answered > 100
    assert failures == []
    assert running.process.returncode is None


@pytest.mark.parametrize("workers", [1, 2])
async def test_an_invalid_config_on_sighup_is_refused_and_the_old_one_serves(
    start: Callable[[int], Awaitable[Running]], workers: int
) -> None:
    running = await start(workers)
    data = yaml.safe_load(running.config_file.read_text())
    data["auth"]["realm"] = 'a"b'  # valid YAML, refused by validation
    data["rate_limit"]["rules"][0]["value"] = 999
    running.config_file.write_text(yaml.safe_dump(data))
    running.signal(signal.SIGHUP)

    async def refusal_logged() -> bool:
        return "reload refused" in running.process.log()

    await until(refusal_logged, "the refusal in the log")
    assert [await running.limit() for _ in range(10)] == [100] * 10
    assert running.process.returncode is None


async def test_sigusr1_does_not_stop_the_gateway(
    start: Callable[[int], Awaitable[Running]],
) -> None:
    running = await start(2)
    running.signal(signal.SIGUSR1)

    async def ignored_logged() -> bool:
        return "SIGUSR1 ignored" in running.process.log()

    await until(ignored_logged, "SIGUSR1 to be logged")
    assert await running.limit() == 100
    assert running.process.returncode is None


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The fields after the command, whose parentheses may hold spaces.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    # A zombie is dead; it waits only for its (new) parent to reap it.
    return not (status.exists() and "State:\tZ" in status.read_text())


async def test_workers_exit_when_the_supervisor_is_killed(
    start: Callable[[int], Awaitable[Running]],
) -> None:
    running = await start(2)
    supervisor = running.process.pid

    async def two_workers() -> list[int]:
        # Spawned workers, not the spawn context's resource tracker.
        found = [p for p in children(supervisor) if "spawn_main" in _cmdline(p)]
        return found if len(found) >= 2 else []

    workers = await until(two_workers, "the workers")
    running.signal(signal.SIGKILL)
    await running.process.wait()

    async def all_gone() -> bool:
        return not any(alive(pid) for pid in workers)

    await until(all_gone, "the workers to exit after their supervisor")
    assert await running.limit() is None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


async def test_a_restarted_worker_serves_the_validated_config_not_the_edited_file(
    start: Callable[[int], Awaitable[Running]],
) -> None:
    running = await start(2)
    running.config_file.write_text("this: [is not, a gateway config\n")
    workers = children(running.process.pid)
    # SIGKILL every child: the supervisor starts the workers again.
    for pid in workers:
        os.kill(pid, signal.SIGKILL)

    async def served_again() -> bool:
        return {await running.limit() for _ in range(10)} == {100}

    await until(served_again, "restarted workers to serve")
    assert running.process.returncode is None
