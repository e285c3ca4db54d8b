"""Serving the gateway: one process, or several sharing the port.

With ``listen.workers`` above one, each worker is a separate process with
its own event loop, bound with SO_REUSEPORT so the kernel spreads
connections; Redis is what makes their rate limits one.

The admin listener (health, metrics, dashboard) runs in the one process
when there is one. With several workers the parent serves it: it is the
process that outlives every worker and knows which are alive, and it
carries no proxy traffic to slow a probe. Workers write their metrics to
``PROMETHEUS_MULTIPROC_DIR`` and stream their decisions to the parent's
socket, so ``/metrics`` and the dashboard show what all of them did.
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
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

import uvloop
from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from gateway.admin.app import AdminSources, build_admin_app, local_sources
from gateway.app import GATEWAY, build_app, build_readiness, make_store
from gateway.config import GatewayConfig, load_config
from gateway.http.protocol import ClientLimits, GatewayRunner
from gateway.http.upstream import UpstreamClient
from gateway.observability.decisions import DecisionLog
from gateway.observability.feed import FeedListener, SocketFeed
from gateway.observability.logs import configure_logging
from gateway.observability.metrics import (
    MULTIPROC_ENV,
    clear_multiprocess_dir,
    exposition_registry,
    multiprocess_dir,
)
from gateway.observability.readiness import CheckResult

log = logging.getLogger("gateway.runtime.server")

# After shutdown_timeout, how long a worker gets to exit before it is killed.
_EXIT_GRACE_SECONDS = 5.0


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = 60.0,
    limits: ClientLimits | None = None,
) -> web.AppRunner:
    """Serve ``app``; with ``limits``, on the gateway's own protocol (gateway.http.protocol)."""
    runner = (
        web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
        if limits is None
        else GatewayRunner(app, limits, access_log=None, shutdown_timeout=shutdown_timeout)
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    return runner


async def _serve(config: GatewayConfig, reuse_port: bool, feed_path: Path | None) -> None:
    stop = _stop_on_signals()
    app = build_app(config, feed=SocketFeed(feed_path) if feed_path is not None else None)
    proxy = await start_site(
        app,
        config.listen.host,
        config.listen.port,
        reuse_port=reuse_port,
        shutdown_timeout=config.listen.shutdown_timeout,
        limits=app[GATEWAY].client_limits,
    )
    admin = None
    if feed_path is None and config.admin.enabled:
        admin_app = build_admin_app(config.admin, local_sources(app))
        admin = await start_site(admin_app, config.admin.host, config.admin.port)
        log.info("admin listener on %s:%d", config.admin.host, config.admin.port)
    await stop.wait()
    # Unready first, so load balancers stop sending while in-flight
    # requests finish; the admin listener goes last so probes see it.
    app[GATEWAY].readiness.draining = True
    await proxy.cleanup()
    if admin is not None:
        await admin.cleanup()


def event_loop_factory(config: GatewayConfig) -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop: libuv's event loop and socket transports, measurably faster
    # than asyncio's own on the proxy's hot path (bench/gateway_vs_haproxy.py).
    return uvloop.new_event_loop if config.listen.uvloop else None


def serve(
    config: GatewayConfig, *, reuse_port: bool = False, feed_path: Path | None = None
) -> None:
    configure_logging(config.logging.level, config.logging.format)
    with asyncio.Runner(loop_factory=event_loop_factory(config)) as runner:
        runner.run(_serve(config, reuse_port, feed_path))


def _worker(config_path: str, feed_path: str) -> None:
    serve(load_config(config_path), reuse_port=True, feed_path=Path(feed_path))


class WorkersAlive:
    name = "workers"

    def __init__(self, workers: _Workers) -> None:
        self.workers = workers

    async def __call__(self) -> CheckResult:
        alive = sum(1 for p in self.workers.processes if p.is_alive())
        total = len(self.workers.processes)
        return CheckResult(alive == total, f"{alive} of {total} worker(s) alive")


# A worker that dies is started again, as systemd's Restart= would, after
# a pause that doubles while it keeps dying young, so that a worker which
# cannot start (a port taken, say) does not spin.
_RESTART_DELAY = 0.1
_RESTART_DELAY_MAX = 30.0
_STABLE_AFTER_SECONDS = 10.0


class _Workers:
    """The worker processes: started, restarted when one dies, stopped together."""

    def __init__(self, config_path: Path, feed_path: Path, count: int, metrics_dir: Path) -> None:
        # spawn, not fork: each worker builds its own loop, sessions and pools.
        self._context = multiprocessing.get_context("spawn")
        self._args = (str(config_path), str(feed_path))
        self.processes: list[BaseProcess] = [self._new(i) for i in range(count)]
        self._started_at = [0.0] * count
        self._delay = [_RESTART_DELAY] * count
        self.metrics_dir = metrics_dir
        self.stopping = False
        self.all_exited = asyncio.Event()

    def _new(self, slot: int) -> BaseProcess:
        return self._context.Process(target=_worker, args=self._args, name=f"worker-{slot}")

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
        # Its live gauges must not be summed any more; its counters stay.
        mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
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
            process.name, process.pid, process.exitcode, lived, delay,
        )  # fmt: skip
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
    stop = _stop_on_signals()
    runtime = Path(tempfile.mkdtemp(prefix="image-gateway-"))
    metrics_dir = multiprocess_dir() or runtime / "metrics"
    clear_multiprocess_dir(metrics_dir)
    # Before any worker starts: prometheus_client picks multiprocess mode
    # when it is imported, and spawned workers inherit the environment.
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    decisions = DecisionLog(config.admin.recent_decisions)
    feed = FeedListener(runtime / "decisions.sock", decisions)
    await feed.start()
    upstream = UpstreamClient(config.upstream)
    await upstream.open()
    store = make_store(config.rate_limit)
    workers = _Workers(config_path, feed.path, config.listen.workers, metrics_dir)
    # The workers verify tokens and fetch key sets; the parent knows only
    # how many key sources the configuration names.
    key_sources = sum(len(i.keys) + (i.jwks is not None) for i in config.auth.trusted_issuers)
    readiness = build_readiness(config, upstream, store, lambda: key_sources)
    readiness.add(WorkersAlive(workers))
    admin = None
    try:
        workers.start()
        if config.admin.enabled:
            sources = AdminSources(readiness, exposition_registry(), decisions)
            admin_app = build_admin_app(config.admin, sources)
            admin = await start_site(admin_app, config.admin.host, config.admin.port)
            log.info("admin listener on %s:%d", config.admin.host, config.admin.port)
        await stop.wait()
        readiness.draining = True
        return await workers.stop(config.listen.shutdown_timeout + _EXIT_GRACE_SECONDS)
    finally:
        if admin is not None:
            await admin.cleanup()
        await feed.close()
        await upstream.close()
        await store.close()
        shutil.rmtree(runtime, ignore_errors=True)


def run(config_path: Path) -> int:
    config = load_config(config_path)
    configure_logging(config.logging.level, config.logging.format)
    workers = config.listen.workers
    log.info(
        "image-gateway on %s:%d, %d worker(s), upstream %s",
        config.listen.host,
        config.listen.port,
        workers,
        config.upstream.url,
    )
    if workers == 1:
        serve(config)
        return 0
    return asyncio.run(_supervise(config, config_path))
