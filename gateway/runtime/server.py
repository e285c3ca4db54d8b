"""Serving the gateway in one process: alone, or as one of several workers.

With ``listen.workers`` above one, each worker is a separate process with
its own event loop, bound with SO_REUSEPORT so the kernel spreads
connections; Redis is what makes their rate limits one. The workers'
supervisor (gateway.runtime.supervisor) starts this same serving in each.

The admin listener (health, metrics, dashboard) runs in the one process
when there is one; with several workers the supervisor serves it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop
from aiohttp import web

from gateway.app import GATEWAY, build_app, worker_readiness
from gateway.config import GatewayConfig
from gateway.http.protocol import ClientLimits, GatewayRunner
from gateway.observability.feed import SocketFeed
from gateway.observability.logs import configure_logging
from gateway.observability.readiness import Readiness
from gateway.runtime.drain import drain
from gateway.runtime.lifecycle import read_config, take_over
from gateway.runtime.worker_status import report_forever

if TYPE_CHECKING:
    # The dashboard's app, with jinja2 and its templates: imported only by the
    # process that serves it, never by a worker (about 9 MB of RSS each).
    from gateway.admin.app import AdminSources

log = logging.getLogger("gateway.runtime.server")


def stop_on_signals() -> asyncio.Event:
    """Set by the first SIGTERM or SIGINT. Loop handlers, not KeyboardInterrupt:
    started from a script's `cmd &`, a process inherits SIGINT ignored, and
    Python then never raises KeyboardInterrupt; only a handler stops it."""
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
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Serve ``app``; with ``limits``, on the gateway's own protocol (gateway.http.protocol);
    with ``ssl_context``, over TLS."""
    runner = (
        web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
        if limits is None
        else GatewayRunner(app, limits, access_log=None, shutdown_timeout=shutdown_timeout)
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port, ssl_context=ssl_context).start()
    return runner


@dataclass(frozen=True, slots=True)
class WorkerLink:
    """Where a worker meets its supervisor: the decision feed's socket, the
    directory it reports its checks to, and the handed-over configuration."""

    feed_path: Path
    runtime: Path

    @property
    def status_dir(self) -> Path:
        return self.runtime / "status"

    @property
    def config_file(self) -> Path:
        return self.runtime / "config.pickle"


def _ignore(name: str) -> None:
    log.info("%s ignored (SIGHUP reloads the configuration)", name)


def wait_for_reload() -> asyncio.Event:
    reload = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        loop.add_signal_handler(signum, _ignore, signal.Signals(signum).name)
    return reload


def freeze_long_lived() -> int:
    """Leave what is alive now (modules, the configuration, the app and its
    chain: it lives as long as the app) out of the cyclic collector's full
    passes, and say how many objects that is.

    A full pass scans every tracked object: 50 to 65 ms in a worker serving
    the shipped configuration, during which every request it holds waits,
    which set the p99 under load; with these left out, 5 to 7 ms. Garbage
    from before (an old app after a reload) is collected first, so that no
    cycle of it is kept for good."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def next_signal(stop: asyncio.Event, reload: asyncio.Event) -> bool:
    """Wait for SIGTERM/SIGINT (False) or SIGHUP (True)."""
    waiting = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(reload.wait())]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in waiting:
        task.cancel()
    reload.clear()
    return not stop.is_set()


async def start_admin(
    config: GatewayConfig, sources: AdminSources | web.Application
) -> web.AppRunner:
    """The admin listener, showing ``sources``, or a gateway app's own."""
    from gateway.admin.app import build_admin_app, local_sources

    if isinstance(sources, web.Application):
        sources = local_sources(sources)
    admin_app = build_admin_app(config.admin, sources)
    admin = await start_site(admin_app, config.admin.host, config.admin.port)
    log.info("admin listener on %s:%d", config.admin.host, config.admin.port)
    return admin


def warn_if_restart_needed(old: GatewayConfig, new: GatewayConfig) -> None:
    if old.listen != new.listen:
        log.warning("listen.* changes take effect on restart; the sockets stay as they are")


async def _serve(
    config: GatewayConfig, config_path: Path | None, worker: WorkerLink | None
) -> None:
    stop = stop_on_signals()
    reload = wait_for_reload()
    feed_path = worker.feed_path if worker is not None else None

    def gateway_app(config: GatewayConfig, limits: ClientLimits | None = None) -> web.Application:
        feed = SocketFeed(feed_path) if feed_path is not None else None
        return build_app(config, feed=feed, client_limits=limits)

    app = gateway_app(config)
    limits = app[GATEWAY].client_limits
    # The listener's, like its socket: kept across reloads, its files read again.
    certificate = config.listen.tls.certificate() if config.listen.tls is not None else None
    proxy = await start_site(
        app,
        config.listen.host,
        config.listen.port,
        # Siblings share the port: the kernel spreads connections among them.
        reuse_port=worker is not None,
        shutdown_timeout=config.listen.shutdown_timeout,
        limits=limits,
        ssl_context=certificate.context if certificate is not None else None,
    )
    assert isinstance(proxy, GatewayRunner)
    log.info("%d objects made at start-up left out of full collections", freeze_long_lived())
    admin = None
    if worker is None and config.admin.enabled:
        admin = await start_admin(config, proxy.app)
    reporter = None
    if worker is not None:

        def own_checks() -> Readiness:
            return worker_readiness(proxy.app[GATEWAY])

        reporter = asyncio.create_task(report_forever(worker.status_dir, own_checks))
    while await next_signal(stop, reload):
        if certificate is not None:
            # A rotated certificate is served from the next handshake on,
            # whatever becomes of the configuration.
            certificate.reload()
        if worker is not None:
            fresh: GatewayConfig | None = take_over(worker.config_file)
        else:
            assert config_path is not None
            fresh = read_config(config_path)
        if fresh is None:
            continue
        warn_if_restart_needed(config, fresh)
        try:
            await proxy.swap(gateway_app(fresh, limits), fresh.listen.shutdown_timeout)
        except Exception:
            log.exception("reload failed; the running configuration stays")
            continue
        config = fresh
        log.info(
            "configuration reloaded; %d objects left out of full collections", freeze_long_lived()
        )
        if admin is not None:
            await admin.cleanup()
            admin = await start_admin(config, proxy.app)
    if reporter is not None:
        reporter.cancel()
    # Unready first, so load balancers stop sending while in-flight
    # requests finish; the admin listener goes last so probes see it.
    proxy.app[GATEWAY].readiness.draining = True
    await drain(proxy, config.listen.shutdown_timeout)
    if admin is not None:
        await admin.cleanup()


def event_loop_factory(config: GatewayConfig) -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop: libuv's event loop and socket transports, measurably faster
    # than asyncio's own on the proxy's hot path (bench/gateway_vs_haproxy.py).
    return uvloop.new_event_loop if config.listen.uvloop else None


def serve(
    config: GatewayConfig, *, config_path: Path | None = None, worker: WorkerLink | None = None
) -> None:
    """Serve until SIGTERM; on SIGHUP, reload from ``config_path`` (one process)
    or from what the supervisor handed over (a worker)."""
    configure_logging(config.logging.level, config.logging.format)
    with asyncio.Runner(loop_factory=event_loop_factory(config)) as runner:
        runner.run(_serve(config, config_path, worker))
