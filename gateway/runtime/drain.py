"""Stopping a listener the way an operator can follow in the log.

A drain stops accepting connections, lets the requests in flight finish
(``listen.shutdown_timeout`` at most; aiohttp cancels what is left then) and
closes the app. It logs one line as it starts, with how many requests are
in flight, and one as it ends, with how long it took and how many requests
were still running when the time ran out.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.http.protocol import GatewayRunner, GatewayServer

log = logging.getLogger("gateway.runtime.drain")


async def drain(runner: GatewayRunner, grace: float) -> None:
    """Close ``runner`` (whose shutdown timeout is ``grace``), logging the drain."""
    server = runner.server
    assert isinstance(server, GatewayServer), "set the runner up first"
    log.info("drain started: %d request(s) in flight, %gs for them to finish",
             server.in_flight, grace)  # fmt: skip
    started = time.monotonic()
    # Read when the time runs out, a moment before aiohttp's own deadline
    # (which starts once the sockets are closed): what is left then is cut.
    cut: list[int] = []
    deadline = asyncio.get_running_loop().call_later(grace, lambda: cut.append(server.in_flight))
    try:
        await runner.cleanup()
    finally:
        deadline.cancel()
    elapsed = time.monotonic() - started
    if cut and cut[0]:
        log.warning("drain ended after %.1fs: %d request(s) still running were cut",
                    elapsed, cut[0])  # fmt: skip
    else:
        log.info("drain ended after %.1fs: every request finished", elapsed)
