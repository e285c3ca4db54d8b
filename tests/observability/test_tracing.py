"""Tracing with the real OpenTelemetry SDK, exported over OTLP/HTTP to a receiver
that decodes the protobuf (tests/support/otlp_receiver.py), in front of a real backend
and a Keystone stand-in on real sockets.

One DELETE is one trace: the caller's traceparent continued, the server span
with what the chain decided, child spans for Keystone, the limiter, the owner
look-up (its GET inside) and the backend call, whose traceparent the backend
receives. A collector that is down fails no request and slows none.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from gateway.app import GATEWAY, build_app
from gateway.config import parse_config
from gateway.observability.tracing import ServerSpanMiddleware
from tests.support.gateway_app import GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.otlp_receiver import ReceivedSpan, Receiver, receiving
from tests.support.ports import free_port
from tests.support.scripted_keystone import ScriptedKeystone, serve_keystone, token_body
from tests.support.tokens import Keys, TokenFactory
from tests.support.waiting import until

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_ID = "6a0d9f6c-1f3e-4b0e-8e7e-2b9c1d2e3f40"
CALLER_TOKEN = "gAAAAABcaller-token"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass
class Backend:
    """The image backend: the owner look-up's GET and the DELETE; it keeps their headers."""

    url: str = ""
    received: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.method, dict(request.headers)))
        if request.method == "GET":
            return web.json_response({"owner": "project-a", "visibility": "private"})
        return web.Response(status=204)

    def traceparent(self, method: str) -> str:
        [headers] = [h for m, h in self.received if m == method]
        return headers["traceparent"]


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    yield state
    await server.close()


@pytest.fixture
async def keystone() -> AsyncIterator[ScriptedKeystone]:
    scripted = ScriptedKeystone()
    scripted.valid[CALLER_TOKEN] = token_body(
        "project-a", "alice", ["cloudImages:admin"], time.time() + 3600
    )
    server = await serve_keystone(scripted)
    yield scripted
    await server.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as receiver:
        yield receiver


def tracing_section(endpoint: str, **overrides: Any) -> dict[str, Any]:
    # Exported every 50 ms, so the tests see spans soon after the request.
    return {"endpoint": endpoint, "schedule_delay": 0.05, "timeout": 1, **overrides}


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), spans
    return named


async def test_a_delete_is_one_trace_continued_from_the_callers_traceparent(
    make_gateway: GatewayFactory,
    backend: Backend,
    keystone: ScriptedKeystone,
    receiver: Receiver,
    keys: Keys,
) -> None:
    gateway = await make_gateway(
        backend.url,
        tracing=tracing_section(receiver.url),
        auth={**config_data("", keys)["auth"], "keystone": keystone.section()},
    )
    response = await gateway.delete(
        f"/v2/images/{IMAGE_ID}",
        headers={
            "X-Auth-Token": CALLER_TOKEN,
            "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
            "tracestate": "vendor=abc",
        },
    )
    assert response.status == 204

    await receiver.wait_for(lambda: len(receiver.trace(CALLER_TRACE)) == 6, "the trace's spans")
    spans = by_name(receiver.trace(CALLER_TRACE))
    server = spans["DELETE delete_image"]
    # Continued: the caller's span is the parent of ours.
    assert server.parent_span_id == CALLER_SPAN
    assert server.kind == Span.SPAN_KIND_SERVER
    assert server.service == "image-gateway"
    assert server.attributes == {
        "http.request.method": "DELETE",
        "url.path": f"/v2/images/{IMAGE_ID}",
        "http.response.status_code": 204,
        "gateway.request_id": response.headers["X-OpenStack-Request-Id"],
        "gateway.route": "delete_image",
        "gateway.project_id": "project-a",
        "gateway.decision": "forwarded",
        "gateway.upstream.status_code": 204,
    }
    children = {"keystone validate token", "rate limit", "owner look-up", "upstream DELETE"}
    assert {n for n, s in spans.items() if s.parent_span_id == server.span_id} == children
    assert spans["keystone validate token"].attributes["gateway.keystone.verdict"] == "valid"
    assert spans["keystone validate token"].kind == Span.SPAN_KIND_CLIENT
    assert spans["rate limit"].attributes["gateway.ratelimit.outcome"] == "allowed"
    assert spans["owner look-up"].attributes["gateway.image.found"] is True
    # The look-up's GET is the look-up's child.
    assert spans["upstream GET"].parent_span_id == spans["owner look-up"].span_id
    upstream = spans["upstream DELETE"]
    assert upstream.kind == Span.SPAN_KIND_CLIENT
    assert upstream.attributes["http.response.status_code"] == 204
    # The backend received the trace, its parent the span of the call it received.
    assert backend.traceparent("DELETE") == f"00-{CALLER_TRACE}-{upstream.span_id}-01"
    assert backend.traceparent("GET") == f"00-{CALLER_TRACE}-{spans['upstream GET'].span_id}-01"
    [delete_headers] = [h for m, h in backend.received if m == "DELETE"]
    assert delete_headers["tracestate"] == "vendor=abc"


async def test_a_request_without_traceparent_starts_a_trace_and_refusals_are_spans_too(
    make_gateway: GatewayFactory,
    backend: Backend,
    receiver: Receiver,
    token: TokenFactory,
) -> None:
    gateway = await make_gateway(backend.url, tracing=tracing_section(receiver.url))
    forwarded = await gateway.delete(f"/v2/images/{IMAGE_ID}", headers={"X-Auth-Token": token()})
    refused = await gateway.delete(
        f"/v2/images/{IMAGE_ID}", headers={"X-Auth-Token": token(roles=["cloudImages:observer"])}
    )
    assert (forwarded.status, refused.status) == (204, 403)

    def server_spans() -> dict[str, ReceivedSpan]:
        return {
            str(s.attributes["gateway.request_id"]): s
            for s in receiver.spans
            if s.kind == Span.SPAN_KIND_SERVER
        }

    await receiver.wait_for(lambda: len(server_spans()) == 2, "two server spans")
    started = server_spans()[forwarded.headers["X-OpenStack-Request-Id"]]
    assert started.parent_span_id == ""
    assert backend.traceparent("DELETE").split("-")[1] == started.trace_id
    denied = server_spans()[refused.headers["X-OpenStack-Request-Id"]]
    assert denied.trace_id != started.trace_id
    assert denied.attributes["gateway.decision"] == "denied"
    assert denied.attributes["http.response.status_code"] == 403
    assert "gateway.upstream.status_code" not in denied.attributes


async def test_sample_ratio_zero_records_no_trace_of_its_own_but_follows_a_sampled_caller(
    make_gateway: GatewayFactory, backend: Backend, receiver: Receiver, token: TokenFactory
) -> None:
    gateway = await make_gateway(
        backend.url, tracing=tracing_section(receiver.url, sample_ratio=0.0)
    )
    unsampled = await gateway.delete(f"/v2/images/{IMAGE_ID}", headers={"X-Auth-Token": token()})
    # Propagated, its sampled flag (the lowest bit) off.
    assert int(backend.traceparent("DELETE").split("-")[3], 16) & 1 == 0
    sampled = await gateway.delete(
        f"/v2/images/{IMAGE_ID}",
        headers={"X-Auth-Token": token(), "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert (unsampled.status, sampled.status) == (204, 204)

    await receiver.wait_for(lambda: bool(receiver.trace(CALLER_TRACE)), "the sampled trace")
    ids = {s.attributes.get("gateway.request_id") for s in receiver.spans}
    assert unsampled.headers["X-OpenStack-Request-Id"] not in ids
    assert sampled.headers["X-OpenStack-Request-Id"] in ids


async def test_a_collector_that_is_down_fails_and_slows_no_request_and_its_return_is_logged(
    backend: Backend, keys: Keys, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.tracing")
    port = free_port()  # nothing listens here yet
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    # Each export gives up after 3 s: a request that waited for one would take that long.
    tracing = tracing_section(endpoint, timeout=3)
    config = parse_config(config_data(backend.url, keys, tracing=tracing))
    client = TestClient(TestServer(build_app(config), host="127.0.0.1"))
    await client.start_server()
    slowest = 0.0
    try:
        for _ in range(20):
            started = time.monotonic()
            response = await client.delete(
                f"/v2/images/{IMAGE_ID}", headers={"X-Auth-Token": token()}
            )
            slowest = max(slowest, time.monotonic() - started)
            assert response.status == 204

        def logged(text: str) -> bool:
            return any(text in r.getMessage() for r in caplog.records)

        await until(lambda: logged(f"the trace collector ({endpoint}) unavailable"), "the outage")
        assert len(backend.received) == 40  # each delete's look-up and the delete itself
        async with receiving(port) as collector:
            more = await client.delete(f"/v2/images/{IMAGE_ID}", headers={"X-Auth-Token": token()})
            assert more.status == 204
            await collector.wait_for(lambda: bool(collector.spans), "spans after the outage")
            await until(lambda: logged("recovered after"), "the recovery line")
    finally:
        closing = time.monotonic()
        await client.close()
        closed_in = time.monotonic() - closing
    # Exporting is on its own thread: a request never waits for it.
    assert slowest < 1.5
    # Shutting down gives the collector tracing.timeout (3 s) at most.
    assert closed_in < 5.5
    down = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert "span(s) not exported" in down[0]


def test_without_a_tracing_section_the_chain_has_no_tracing_step_and_no_sdk_is_loaded(
    keys: Keys,
) -> None:
    data = json.dumps(config_data("http://127.0.0.1:1", keys))
    script = (
        "import json, sys\n"
        "TRACING = ('opentelemetry.sdk.trace', 'opentelemetry.exporter',"
        " 'gateway.observability.tracing')\n"
        "from gateway.app import build_app\n"
        "from gateway.config import parse_config\n"
        f"app = build_app(parse_config(json.loads({data!r})))\n"
        "print(sorted(type(m).__name__ for m in app.middlewares))\n"
        # redis-py imports OpenTelemetry's metrics API when it is installed;
        # the tracing SDK and the exporter are ours alone to load.
        "print(sorted(m for m in sys.modules if m.startswith(TRACING)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "ServerSpanMiddleware" not in out[0]
    assert "RequestIdMiddleware" in out[0]
    assert out[1] == "[]"


async def test_with_a_tracing_section_the_step_sits_right_inside_the_request_id(
    make_gateway: GatewayFactory, backend: Backend, receiver: Receiver
) -> None:
    gateway = await make_gateway(backend.url, tracing=tracing_section(receiver.url))
    assert gateway.app is not None
    chain = [type(m).__name__ for m in gateway.app.middlewares]
    assert chain[:3] == ["RequestIdMiddleware", "ServerSpanMiddleware", "ObservabilityMiddleware"]
    assert isinstance(gateway.app.middlewares[1], ServerSpanMiddleware)
    assert gateway.app[GATEWAY].instrumentation.server_span()
