"""Supervising workers: several processes sharing the port, one admin listener.

With ``listen.workers`` above one, this process starts the workers
(gateway.runtime.server serves in each), starts one again when it dies, hands
them a reloaded configuration and stops them together.

The parent serves the admin listener: it is the process that outlives every
worker and knows which are alive, and it carries no proxy traffic to slow a
probe. Workers stream their decisions to the parent's socket and report
their counters over it when ``/metrics`` is scraped
(gateway.observability.feed), so ``/metrics`` and the dashboard show what all
of them did.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from aiohttp import web

from gateway.app import build_readiness, make_store
from gateway.config import ConfigError, GatewayConfig, ListenConfig, load_config
from gateway.http.upstream import UpstreamClient
from gateway.observability.decisions import DecisionLog
from gateway.observability.feed import FeedListener
from gateway.observability.logs import configure_logging
from gateway.observability.metrics import GatewayMetrics, MetricsSource
from gateway.observability.readiness import Readiness, ReadinessCheck, ReadinessResult
from gateway.runtime.lifecycle import die_with_parent, hand_over, read_config
from gateway.runtime.server import (
    WorkerLink,
    event_loop_factory,
    next_signal,
    serve,
    start_admin,
    stop_on_signals,
    wait_for_reload,
    warn_if_restart_needed,
)
from gateway.runtime.worker_status import WorkersReady

log = logging.getLogger("gateway.runtime.server")

# After shutdown_timeout, how long a worker gets to exit before it is killed.
_EXIT_GRACE_SECONDS = 5.0


def _worker(config: GatewayConfig, link: WorkerLink, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    serve(config, worker=link)


class WorkersAlive:
    name = "workers"

    def __init__(self, workers: _Workers) -> None:
        self.workers = workers

    async def __call__(self) -> ReadinessResult:
        alive = sum(1 for p in self.workers.processes if p.is_alive())
        total = len(self.workers.processes)
        return ReadinessResult(alive == total, f"{alive} of {total} worker(s) alive")


# A worker that dies is started again, as systemd's Restart= would, after
# a pause that doubles while it keeps dying young, so that a worker which
# cannot start (a port taken, say) does not spin.
_RESTART_DELAY = 0.1
_RESTART_DELAY_MAX = 30.0
_STABLE_AFTER_SECONDS = 10.0


class _Workers:
    """The worker processes: started, restarted when one dies, stopped together."""

    def __init__(self, config: GatewayConfig, link: WorkerLink, count: int) -> None:
        # spawn, not fork: each worker builds its own loop, sessions and pools.
        self._context = multiprocessing.get_context("spawn")
        # Handed to every worker started from now on, a restarted one too.
        self.config = config
        self.link = link
        self.processes: list[BaseProcess] = [self._new(i) for i in range(count)]
        self._started_at = [0.0] * count
        self._delay = [_RESTART_DELAY] * count
        self.stopping = False
        self.all_exited = asyncio.Event()

    def _new(self, slot: int) -> BaseProcess:
        return self._context.Process(
            target=_worker, args=(self.config, self.link, os.getpid()), name=f"worker-{slot}"
        )

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None and p.is_alive()]

    def signal(self, signum: int) -> None:
        for process in self.processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    def start(self) -> None:
        for slot in range(len(self.processes)):
            self._start(slot)

    def _start(self, slot: int) -> None:
        if self.stopping:
            return
        process = self.processes[slot]
        process.start()
        self._started_at[slot] = time.monotonic()
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, slot)

    def _exited(self, slot: int) -> None:
        process = self.processes[slot]
        asyncio.get_running_loop().remove_reader(process.sentinel)
        process.join()
        assert process.pid is not None
        if self.stopping:
            log.info("%s (pid %d) exited with %s", process.name, process.pid, process.exitcode)
            if not any(p.is_alive() for p in self.processes):
                self.all_exited.set()
            return
        lived = time.monotonic() - self._started_at[slot]
        if lived > _STABLE_AFTER_SECONDS:
            self._delay[slot] = _RESTART_DELAY
        delay = self._delay[slot]
        self._delay[slot] = min(delay * 2, _RESTART_DELAY_MAX)
        log.warning(
            "%s (pid %d) died with %s after %.1fs; starting another in %.1fs",
            process.name,
            process.pid,
            process.exitcode,
            lived,
            delay,
        )
        self.processes[slot] = self._new(slot)
        asyncio.get_running_loop().call_later(delay, self._start, slot)

    async def stop(self, grace: float) -> int:
        self.stopping = True
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        if not any(p.is_alive() for p in self.processes):
            self.all_exited.set()
        try:
            async with asyncio.timeout(grace):
                await self.all_exited.wait()
        except TimeoutError:
            for process in self.processes:
                if process.is_alive():
                    log.warning("%s did not stop in %gs; killing it", process.name, grace)
                    process.kill()
            await self.all_exited.wait()
        return max((p.exitcode or 0) for p in self.processes)


async def _supervise(config: GatewayConfig, config_path: Path) -> int:
    stop = stop_on_signals()
    reload = wait_for_reload()
    runtime = Path(tempfile.mkdtemp(prefix="image-gateway-"))
    decisions = DecisionLog(config.admin.recent_decisions)
    feed = FeedListener(runtime / "decisions.sock", decisions)
    await feed.start()
    link = WorkerLink(feed.path, runtime)
    link.status_dir.mkdir()
    hand_over(config, link.config_file)
    workers = _Workers(config, link, config.listen.workers)
    metrics = MetricsSource(GatewayMetrics(), feed.metrics)
    parts = _SupervisorParts(config, workers, decisions, metrics)
    await parts.open()
    try:
        workers.start()
        await parts.start_admin()
        while await next_signal(stop, reload):
            fresh = read_config(config_path)
            if fresh is None:
                continue
            warn_if_restart_needed(config, fresh)
            # Validated here, once; workers take the object, not the file.
            hand_over(fresh, link.config_file)
            workers.config = config = fresh
            workers.signal(signal.SIGHUP)
            await parts.replace(fresh)
            log.info("configuration reloaded; workers told")
        parts.readiness.draining = True
        log.info("stopping %d worker(s); each drains its requests", len(workers.processes))
        return await workers.stop(config.listen.shutdown_timeout + _EXIT_GRACE_SECONDS)
    finally:
        await parts.close()
        await feed.close()
        shutil.rmtree(runtime, ignore_errors=True)


class _SupervisorParts:
    """What the supervisor serves from the configuration: its readiness (with
    the upstream and Redis it checks) and the admin listener."""

    def __init__(
        self,
        config: GatewayConfig,
        workers: _Workers,
        decisions: DecisionLog,
        metrics: MetricsSource,
    ) -> None:
        self.workers = workers
        self.decisions = decisions
        self.metrics = metrics
        self.admin: web.AppRunner | None = None
        self._build(config)

    def _build(self, config: GatewayConfig) -> None:
        self.config = config
        self.upstream = UpstreamClient(config.upstream)
        self.store = make_store(config.rate_limit)
        self.readiness = self._readiness()

    def _readiness(self) -> Readiness:
        own: list[ReadinessCheck] = [
            WorkersAlive(self.workers),
            WorkersReady(self.workers.link.status_dir, self.workers.pids),
        ]
        return build_readiness(self.config, self.upstream, self.store, own)

    async def open(self) -> None:
        await self.upstream.open()

    async def start_admin(self) -> None:
        if self.config.admin.enabled:
            from gateway.admin.app import AdminSources

            sources = AdminSources(self.readiness, self.metrics, self.decisions)
            self.admin = await start_admin(self.config, sources)

    async def replace(self, config: GatewayConfig) -> None:
        await self.close()
        self._build(config)
        await self.open()
        await self.start_admin()

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.cleanup()
            self.admin = None
        await self.upstream.close()
        await self.store.close()


def run(config_path: Path, *, workers: str | None = None) -> int:
    """Serve until a signal; ``workers`` (a number or auto) overrides listen.workers."""
    config = load_config(config_path)
    if workers is not None:
        try:
            listen = ListenConfig.model_validate({**config.listen.model_dump(), "workers": workers})
        except ValueError:
            raise ConfigError(f"--workers: a positive number or auto, not {workers!r}") from None
        config = config.model_copy(update={"listen": listen})
    configure_logging(config.logging.level, config.logging.format)
    log.info(
        "image-gateway on %s:%d, %d worker(s), upstream %s",
        config.listen.host,
        config.listen.port,
        config.listen.workers,
        config.upstream.url,
    )
    if config.listen.workers == 1:
        serve(config, config_path=config_path)
        return 0
    # The parent on uvloop too: it relays the feed and serves /metrics.
    with asyncio.Runner(loop_factory=event_loop_factory(config)) as runner:
        return runner.run(_supervise(config, config_path))
