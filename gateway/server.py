"""Serving the gateway: one process, or several sharing the port.

With ``listen.workers`` above one, each worker is a separate process with
its own event loop, bound with SO_REUSEPORT so the kernel spreads
connections; Redis is what makes their rate limits one.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from pathlib import Path

from aiohttp import web

from gateway.app import build_app
from gateway.config import GatewayConfig, load_config
from gateway.logs import configure_logging

log = logging.getLogger("gateway.server")


def serve(config: GatewayConfig, *, reuse_port: bool = False) -> None:
    configure_logging(config.logging.level)
    web.run_app(
        build_app(config),
        host=config.listen.host,
        port=config.listen.port,
        reuse_port=reuse_port,
        shutdown_timeout=config.listen.shutdown_timeout,
        access_log=None,
        print=None,
    )


def _worker(config_path: str) -> None:
    serve(load_config(config_path), reuse_port=True)


def run(config_path: Path) -> int:
    config = load_config(config_path)
    configure_logging(config.logging.level)
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
    # spawn, not fork: each worker builds its own loop, sessions and pools.
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(str(config_path),), name=f"worker-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()
    return max((p.exitcode or 0) for p in processes)
