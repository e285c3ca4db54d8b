"""Observability: once a request is answered, say what happened.

It sits right inside the request id and outside the fault envelope, so it
sees every answer as the client does, faults included. From the
RequestContext the chain filled in it builds one record (serialized at most
once), and that record is the access log line, the audit record of an
image API call and the decision the dashboard shows; the metrics count it in plain
in-process counters, read only when /metrics is scraped.
"""

from __future__ import annotations

import logging
import os

from aiohttp import web

from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.observability.access_log import ACCESS_LOGGER, AccessLog
from gateway.observability.audit import AuditSink
from gateway.observability.feed import DecisionFeed
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.records import RequestRecord, failure_status, request_record
from gateway.request_context import RequestContext, context_of

access_log = logging.getLogger(ACCESS_LOGGER)


class ObservabilityMiddleware(Middleware):
    def __init__(self, metrics: GatewayMetrics, feed: DecisionFeed, audit: AuditSink) -> None:
        self.metrics = metrics
        self.feed = feed
        self.audit = audit
        self.access = AccessLog(access_log)
        # The process serving: workers are spawned, each builds its own chain.
        self.pid = os.getpid()

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except BaseException as exc:
            status = failure_status(exc)
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
        record = request_record(
            ctx,
            method=request.method,
            path=request.path,
            client_ip=request.remote or "",
            status=status,
            pid=self.pid,
        )
        self._count(record)
        self.access.write(record)
        if record.audited:
            self.audit.write(record)
        self.feed.publish(record)

    def _count(self, record: RequestRecord) -> None:
        fields = record.fields
        upstream_ms = fields["upstream_ms"]
        self.metrics.record_request(
            route=fields["route"],
            method=fields["method"],
            status=fields["status"],
            decision=fields["decision"],
            seconds=fields["duration_ms"] / 1000,
            upstream_seconds=None if upstream_ms is None else upstream_ms / 1000,
            limiter=fields["limiter"],
        )
        if (upstream_error := fields["upstream_error"]) is not None:
            self.metrics.record_upstream_error(upstream_error)
