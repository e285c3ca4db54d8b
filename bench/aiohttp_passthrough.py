"""A bare aiohttp pass-through proxy: the floor for anything built on aiohttp.

No policy at all: aiohttp's server takes the request, aiohttp's ClientSession
forwards it, the answer is relayed. bench/gateway_vs_haproxy.py runs it next
to the gateway so the gap between the two is what the gateway's own work
costs.

    python -m bench.aiohttp_passthrough PORT UPSTREAM_URL [WORKERS]
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
_HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})


async def forward(request: web.Request) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    async with request.app[SESSION].request(
        request.method,
        request.app[UPSTREAM] + request.path_qs,
        headers=headers,
        data=request.content if request.body_exists else None,
        allow_redirects=False,
    ) as upstream:
        body = await upstream.read()
        relayed = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        return web.Response(status=upstream.status, body=body or None, headers=relayed)


async def _session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(auto_decompress=False)
    yield
    await app[SESSION].close()


def serve_passthrough(
    port: int,
    upstream: str,
    forward: Callable[[web.Request], Awaitable[web.StreamResponse]],
    client: Callable[[web.Application], AsyncIterator[None]],
) -> None:
    """One pass-through process: every path to ``forward``, with ``client``
    (an app cleanup context) open around the app's life."""
    app = web.Application()
    app[UPSTREAM] = upstream
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),  # as the gateway's workers run
    )


def serve(port: int, upstream: str) -> None:
    serve_passthrough(port, upstream, forward, _session)


def run_workers(serve: Callable[[int, str], None]) -> None:
    """``serve(PORT, UPSTREAM_URL)`` in WORKERS processes sharing the port, from argv."""
    port, upstream = int(sys.argv[1]), sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if workers == 1:
        # In this process, so that a profiler or valgrind on it sees the work.
        serve(port, upstream)
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=serve, args=(port, upstream)) for _ in range(workers)]
    for process in processes:
        process.start()

    def stop(signum: int, frame: object) -> None:
        for process in processes:
            process.terminate()

    signal.signal(signal.SIGTERM, stop)
    for process in processes:
        process.join()


if __name__ == "__main__":
    run_workers(serve)
