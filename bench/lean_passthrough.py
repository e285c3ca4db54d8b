"""aiohttp's server forwarding through the gateway's own upstream client, no policy.

The floor for the gateway as built: what aiohttp's request handling and the
lean client (gateway/http/client.py) cost together, before any step of the
chain. bench/gateway_instructions.py counts it beside the gateway.

    python -m bench.lean_passthrough PORT UPSTREAM_URL [WORKERS]
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from bench.aiohttp_passthrough import UPSTREAM, run_workers, serve_passthrough
from gateway.http.client import HttpClient
from gateway.http.hop_by_hop import end_to_end

CLIENT = web.AppKey("client", HttpClient)


async def forward(request: web.Request) -> web.Response:
    headers = end_to_end(request.headers)
    async with await request.app[CLIENT].request(request.method, request.path_qs, headers) as up:
        body = await up.read(1 << 20)
        return web.Response(status=up.status, body=body or None, headers=end_to_end(up.headers))


async def _client(app: web.Application) -> AsyncIterator[None]:
    app[CLIENT] = HttpClient(
        app[UPSTREAM], max_connections=100, connect_timeout=2, read_timeout=30, keepalive_timeout=30
    )
    yield
    await app[CLIENT].close()


def serve(port: int, upstream: str) -> None:
    serve_passthrough(port, upstream, forward, _client)


if __name__ == "__main__":
    run_workers(serve)
