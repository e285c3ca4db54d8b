"""OpenTelemetry tracing: a server span per request, child spans for what it waits on.

Loaded only when the ``tracing`` section is configured
(gateway.observability.instrumentation). Then:

- the chain's tracing step (right inside the request id) continues an
  incoming W3C ``traceparent``/``tracestate`` or starts a trace, sampled by
  ``sample_ratio`` (a caller's sampling decision is followed); its span is
  named after the method and route, and carries the route, the caller's
  project, the decision, the backend's status and the request id, so that
  logs and traces join on it;
- child spans: Keystone's validation of a token, the owner look-up (with its
  GET to the backend inside), the limiter, and the call to the backend,
  which carries ``traceparent`` so that the backend's spans join the trace;
- spans are exported by the SDK's BatchSpanProcessor, on its own thread, in
  batches over OTLP/HTTP: a request only appends its spans to a bounded
  queue. A collector that is down costs no request anything: exports fail on
  that thread (logged as the collector's outage, gateway.observability.outages),
  and past the queue's bound spans are dropped, not waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from gateway import __version__
from gateway.authn.identity import Identity
from gateway.authn.keystone.client import KeystoneClient, KeystoneUnavailable
from gateway.authn.tokens import InvalidToken
from gateway.authz.ownership import ImageOwners, ImageRecord
from gateway.config import KeystoneConfig, RateLimitConfig, TracingConfig, UpstreamConfig
from gateway.http.client import RequestBody, UpstreamResponse
from gateway.http.routes import Handler
from gateway.http.upstream import UpstreamClient
from gateway.middleware.base import Middleware
from gateway.observability.instrumentation import Instrumentation
from gateway.observability.outages import Outage
from gateway.observability.records import decision_of, failure_status, upstream_error_kind
from gateway.ratelimit.limiter import LimitDecision, RateLimiter
from gateway.ratelimit.overrides import OverrideRefresher
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import LimitStore
from gateway.request_context import RequestContext, context_of

log = logging.getLogger("gateway.tracing")

# Attribute names: OpenTelemetry's HTTP conventions where they have one, ours
# under "gateway." for what only the gateway knows.
REQUEST_ID = "gateway.request_id"
GLOBAL_REQUEST_ID = "gateway.global_request_id"
ROUTE = "gateway.route"
PROJECT = "gateway.project_id"
DECISION = "gateway.decision"
UPSTREAM_STATUS = "gateway.upstream.status_code"
STATUS = "http.response.status_code"

_ERROR = Status(StatusCode.ERROR)


class ServerSpanMiddleware(Middleware):
    """1a. The request's span: the trace continued or started, what the chain decided."""

    def __init__(self, tracer: Tracer, propagator: TraceContextTextMapPropagator) -> None:
        self.tracer = tracer
        self.propagator = propagator

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "url.path": request.path,
            REQUEST_ID: ctx.request_id,
        }
        if ctx.global_request_id is not None:
            attributes[GLOBAL_REQUEST_ID] = ctx.global_request_id
        with self.tracer.start_as_current_span(
            request.method,
            context=self.propagator.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except BaseException as exc:
                status = failure_status(exc)
                raise
            finally:
                if span.is_recording():
                    span.set_attributes(_outcome(request.method, ctx, status))
                    if ctx.route is not None:
                        span.update_name(f"{request.method} {ctx.route.name}")
                    if status >= 500:
                        span.set_status(_ERROR)


def _outcome(method: str, ctx: RequestContext, status: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        STATUS: status,
        DECISION: decision_of(ctx, status, upstream_error_kind(ctx)),
    }
    if ctx.route is not None:
        attributes[ROUTE] = ctx.route.name
    if ctx.identity is not None:
        attributes[PROJECT] = ctx.identity.project_id
    if ctx.upstream_status is not None:
        attributes[UPSTREAM_STATUS] = ctx.upstream_status
    return attributes


class TracedUpstreamClient(UpstreamClient):
    """The backend, each call a client span that sends ``traceparent`` on."""

    def __init__(self, config: UpstreamConfig, tracing: Tracing) -> None:
        super().__init__(config)
        self.tracer = tracing.tracer
        self.propagator = tracing.propagator
        self.server: dict[str, AttributeValue] = {
            "server.address": self.http.host,
            "server.port": self.http.port,
        }

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: RequestBody | None = None,
        *,
        expect_continue: bool = False,
    ) -> UpstreamResponse:
        """As UpstreamClient.request; the span ends when the response's head arrives."""
        attributes: dict[str, AttributeValue] = {
            **self.server,
            "http.request.method": method,
            "url.path": target,
        }
        with self.tracer.start_as_current_span(
            f"upstream {method}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            traced = CIMultiDict(headers)
            # Ours replaces any the client sent: the backend's parent is this span.
            self.propagator.inject(traced)
            response = await super().request(
                method, target, traced, body, expect_continue=expect_continue
            )
            span.set_attribute(STATUS, response.status)
            if response.status >= 500:
                span.set_status(_ERROR)
            return response

    async def get_json(
        self, path: str, headers: Mapping[str, str] | CIMultiDict[str]
    ) -> tuple[int, Any]:
        attributes: dict[str, AttributeValue] = {
            **self.server,
            "http.request.method": "GET",
            "url.path": path,
        }
        with self.tracer.start_as_current_span(
            "upstream GET", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            traced = CIMultiDict(headers)
            self.propagator.inject(traced)
            status, body = await super().get_json(path, traced)
            span.set_attribute(STATUS, status)
            return status, body


class TracedImageOwners(ImageOwners):
    """The owner look-up as a span: a cache hit is a short one, a miss holds the GET."""

    def __init__(self, upstream: UpstreamClient, config: UpstreamConfig, tracer: Tracer) -> None:
        super().__init__(upstream, config)
        self.tracer = tracer

    async def record(self, image_id: str, request_id: str) -> ImageRecord | None:
        with self.tracer.start_as_current_span(
            "owner look-up", attributes={"gateway.image_id": image_id}
        ) as span:
            found = await super().record(image_id, request_id)
            span.set_attribute("gateway.image.found", found is not None)
            return found

    async def is_member(self, image_id: str, project_id: str, request_id: str) -> bool:
        with self.tracer.start_as_current_span(
            "member look-up", attributes={"gateway.image_id": image_id}
        ):
            return await super().is_member(image_id, project_id, request_id)


class TracedRateLimiter(RateLimiter):
    def __init__(
        self,
        config: RateLimitConfig,
        store: LimitStore,
        overrides: OverrideRefresher | None,
        *,
        counting: bool,
        tracer: Tracer,
    ) -> None:
        super().__init__(config, store, overrides, counting=counting)
        self.tracer = tracer
        self.store_kind = "redis" if isinstance(store, RedisStore) else "memory"

    async def decide(
        self,
        method: str,
        path: str,
        identity: Identity,
        client_ip: str,
        request_id: str,
        route: str | None = None,
    ) -> LimitDecision | None:
        with self.tracer.start_as_current_span(
            "rate limit", attributes={"gateway.ratelimit.store": self.store_kind}
        ) as span:
            decision = await super().decide(method, path, identity, client_ip, request_id, route)
            outcome = "none" if decision is None else "allowed" if decision.allowed else "limited"
            span.set_attribute("gateway.ratelimit.outcome", outcome)
            return decision


class TracedKeystoneClient(KeystoneClient):
    """Keystone's validation of a token the caches did not hold, as a client span."""

    def __init__(self, config: KeystoneConfig, tracer: Tracer) -> None:
        super().__init__(config)
        self.tracer = tracer

    async def validate(self, token: str) -> Any:
        where = urlsplit(self.validation_url)
        with self.tracer.start_as_current_span(
            "keystone validate token",
            kind=SpanKind.CLIENT,
            attributes={"server.address": where.hostname or "", "server.port": where.port or 0},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                body = await super().validate(token)
            except InvalidToken:
                # A verdict, not a failure.
                span.set_attribute("gateway.keystone.verdict", "refused")
                raise
            except KeystoneUnavailable as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            span.set_attribute("gateway.keystone.verdict", "valid")
            return body


class _ExportFailureReasons(logging.Filter):
    """Keeps the exporter's first line about a failed export (the error; later
    ones say it gave up) as its reason, and drops its lines: the collector's
    Outage reports it, at most once per interval, instead of a line for every
    retry of every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.first is None:
            self.first = record.getMessage()
        return False


class CollectorExporter(SpanExporter):
    """The OTLP exporter, each export's outcome told to the collector's Outage."""

    def __init__(self, exporter: OTLPSpanExporter, outage: Outage) -> None:
        self.exporter = exporter
        self.outage = outage
        self.reasons = _ExportFailureReasons()
        self.logger = logging.getLogger(OTLPSpanExporter.__module__)
        # Counted here, on the export thread.
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.reasons.first = None
        result = self.exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
            self.outage.recovered()
        else:
            self.failed += len(spans)
            self.outage.failed(
                f"{len(spans)} span(s) not exported: {self.reasons.first or 'the export failed'}"
            )
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class Tracing(Instrumentation):
    """The traced parts, one TracerProvider per app (no global one), and its export."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create(
                {"service.name": config.service_name, "service.version": __version__}
            ),
            # Shut down with the app (close), not at interpreter exit.
            shutdown_on_exit=False,
        )
        self.tracer = self.provider.get_tracer("image-gateway", __version__)
        self.propagator = TraceContextTextMapPropagator()
        tls = config.tls
        self.exporter = CollectorExporter(
            OTLPSpanExporter(
                endpoint=config.endpoint,
                headers=config.headers,
                timeout=config.timeout,
                certificate_file=str(tls.ca_file) if tls and tls.ca_file else None,
                client_certificate_file=str(tls.cert_file) if tls and tls.cert_file else None,
                client_key_file=str(tls.key_file) if tls and tls.key_file else None,
            ),
            Outage(f"the trace collector ({config.endpoint})", log),
        )

    def server_span(self) -> Sequence[Middleware]:
        return (ServerSpanMiddleware(self.tracer, self.propagator),)

    def upstream_client(self, config: UpstreamConfig) -> UpstreamClient:
        return TracedUpstreamClient(config, self)

    def image_owners(self, upstream: UpstreamClient, config: UpstreamConfig) -> ImageOwners:
        return TracedImageOwners(upstream, config, self.tracer)

    def rate_limiter(
        self,
        config: RateLimitConfig,
        store: LimitStore,
        overrides: OverrideRefresher | None,
        *,
        counting: bool,
    ) -> RateLimiter:
        return TracedRateLimiter(config, store, overrides, counting=counting, tracer=self.tracer)

    def keystone_client(self, config: KeystoneConfig) -> KeystoneClient:
        return TracedKeystoneClient(config, self.tracer)

    async def open(self) -> None:
        # The export thread starts with the app, not when the app is built.
        self.exporter.logger.addFilter(self.exporter.reasons)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                self.exporter,
                max_queue_size=self.config.max_queue_size,
                schedule_delay_millis=self.config.schedule_delay * 1000,
                max_export_batch_size=self.config.max_export_batch_size,
            )
        )

    async def close(self) -> None:
        """Export what is queued, waiting ``timeout`` at most: a collector that is
        down must not hold a stopping gateway."""
        shutdown = asyncio.ensure_future(asyncio.to_thread(self.provider.shutdown))
        try:
            await asyncio.wait_for(asyncio.shield(shutdown), self.config.timeout)
        except TimeoutError:
            # Ends the export's retries; the spans still queued are dropped.
            self.exporter.shutdown()
            log.warning("tracing: the collector took over %gs; spans still queued were dropped",
                        self.config.timeout)  # fmt: skip
            await shutdown
        finally:
            self.exporter.logger.removeFilter(self.exporter.reasons)
