"""What tracing a request costs in the OpenTelemetry SDK alone, apart from the gateway.

Two figures, CPU time in this process:

- making a request's spans as the gateway does for a JWT delete (the server
  span and two children, one injecting ``traceparent``), at sample ratio 1.0
  and 0 (non-recording spans), handed to a BatchSpanProcessor whose exporter
  drops them;
- encoding spans for OTLP (``encode_spans``, what the exporter does on its
  thread before each POST), per span.

    python -m bench.tracing_spans [--requests 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

REQUEST_ID = "req-6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"


class Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Keeping(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


SERVER: dict[str, AttributeValue] = {
    "http.request.method": "DELETE",
    "url.path": "/v2/images/x",
    "gateway.request_id": REQUEST_ID,
}
UPSTREAM: dict[str, AttributeValue] = {
    "server.address": "127.0.0.1",
    "server.port": 9292,
    "http.request.method": "DELETE",
    "url.path": "/v2/images/x",
}
OUTCOME: dict[str, AttributeValue] = {
    "http.response.status_code": 204,
    "gateway.route": "delete_image",
    "gateway.project_id": "p",
    "gateway.decision": "forwarded",
    "gateway.upstream.status_code": 204,
}


def one_request(tracer: Tracer, propagator: TraceContextTextMapPropagator) -> None:
    with tracer.start_as_current_span("DELETE", attributes=SERVER) as server:
        store = {"gateway.ratelimit.store": "redis"}
        with tracer.start_as_current_span("rate limit", attributes=store) as limit:
            limit.set_attribute("gateway.ratelimit.outcome", "allowed")
        with tracer.start_as_current_span("upstream DELETE", attributes=UPSTREAM) as call:
            headers: dict[str, str] = {}
            propagator.inject(headers)
            call.set_attribute("http.response.status_code", 204)
        if server.is_recording():
            server.set_attributes(OUTCOME)


def spans_per_request(ratio: float, requests: int) -> float:
    """CPU-µs to make one request's spans at ``ratio``."""
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    tracer, propagator = provider.get_tracer("bench"), TraceContextTextMapPropagator()
    started = time.process_time()
    for _ in range(requests):
        one_request(tracer, propagator)
    spent = time.process_time() - started
    provider.shutdown()
    return spent / requests * 1e6


def encoding_per_span(requests: int) -> float:
    """CPU-µs to encode one span for OTLP, in batches of 512 as exported."""
    kept = Keeping()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer, propagator = provider.get_tracer("bench"), TraceContextTextMapPropagator()
    for _ in range(171):  # 513 spans: one batch of 512
        one_request(tracer, propagator)
    batch = kept.spans[:512]
    rounds = max(requests // 1000, 1)
    started = time.process_time()
    for _ in range(rounds):
        encode_spans(batch).SerializePartialToString()
    return (time.process_time() - started) / rounds / len(batch) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    for ratio in (1.0, 0.0):
        spent = spans_per_request(ratio, args.requests)
        print(f"3 spans a request, ratio {ratio}: {spent:6.1f} CPU-us")
    print(f"OTLP encoding, per span:      {encoding_per_span(args.requests):6.1f} CPU-us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
