"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.http.routes import Handler
from gateway.observability.exposition import exposition
from gateway.observability.metrics import MetricsSource
from gateway.observability.readiness import Readiness


async def healthz(_request: web.Request) -> web.Response:
    # Answering at all is the proof: the process and its event loop live.
    return web.json_response({"alive": True, "pid": os.getpid()})


def readyz_handler(readiness: Readiness) -> Handler:
    async def readyz(_request: web.Request) -> web.Response:
        report = await readiness.report()
        return web.json_response(report, status=200 if report["ready"] else 503)

    return readyz


def metrics_handler(source: MetricsSource) -> Handler:
    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=await exposition(source))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return metrics
