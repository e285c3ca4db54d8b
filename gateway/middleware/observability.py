"""1b. Observability: once a request is answered, say what happened.

It sits right inside the request id and outside the fault envelope, so it
sees every answer as the client does, faults included. From the
RequestContext the chain filled in it writes one access log line, an audit
record for every image API decision, the metrics, and the decision the
dashboard shows.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.middleware.context import RequestContext, context_of
from gateway.observability.audit import AuditSink
from gateway.observability.feed import DecisionFeed
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.records import (
    CLIENT_CLOSED,
    AccessRecord,
    access_record,
    audit_record,
)

access_log = logging.getLogger("gateway.access")

# Mirrored counts (token cache, limiter, ...) reach the metrics within this
# long of a request, not on every request: each sync of a mirror that moved
# is a write to the multiprocess metrics files. A scrape of this process
# syncs them at once (GatewayMetrics), so /metrics of one worker is exact.
MIRROR_SYNC_SECONDS = 0.5


class ObservabilityMiddleware(Middleware):
    def __init__(self, metrics: GatewayMetrics, feed: DecisionFeed, audit: AuditSink) -> None:
        self.metrics = metrics
        self.feed = feed
        self.audit = audit
        self._sync_pending = False

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            try:
                self._report(request, ctx, status)
            except Exception:
                # The client's answer is already decided; a failure to report
                # it must not replace it with an error of ours.
                access_log.exception(
                    "could not report the request", extra={"request_id": ctx.request_id}
                )

    def _report(self, request: web.Request, ctx: RequestContext, status: int) -> None:
        record = access_record(
            ctx, method=request.method, path=request.path, client_ip=request.remote or "",
            status=status,
        )  # fmt: skip
        fields = record.as_dict()
        access_log.info(
            "%s %s %d %s",
            record.method,
            record.path,
            record.status,
            record.decision,
            extra={"request_id": record.request_id, "fields": fields},
        )
        self.feed.publish("decision", fields)
        if ctx.route is not None and ctx.route.audited:
            audit = audit_record(record)
            self.audit.write(audit)
            self.feed.publish("audit", audit)
        self._count(record)

    def _count(self, record: AccessRecord) -> None:
        metrics = self.metrics
        metrics.record_request(
            route=record.route,
            method=record.method,
            status=record.status,
            decision=record.decision,
            seconds=record.duration_ms / 1000,
            upstream_seconds=None if record.upstream_ms is None else record.upstream_ms / 1000,
        )
        if record.limiter is not None:
            metrics.ratelimit_decisions.labels(outcome=record.limiter).inc()
        if record.upstream_error is not None:
            metrics.record_upstream_error(record.upstream_error)
        if not self._sync_pending:
            self._sync_pending = True
            asyncio.get_running_loop().call_later(MIRROR_SYNC_SECONDS, self._sync_mirrors)

    def _sync_mirrors(self) -> None:
        self._sync_pending = False
        self.metrics.sync_mirrors()
