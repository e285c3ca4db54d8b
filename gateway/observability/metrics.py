"""Prometheus metrics: one set per app, correct across worker processes.

Nothing is registered in prometheus_client's global REGISTRY: each app owns
a CollectorRegistry. With several workers, prometheus_client's multiprocess
mode is on (``PROMETHEUS_MULTIPROC_DIR``, which gateway.runtime.server sets before
any worker starts): each worker writes its values to files there, and the
process serving ``/metrics`` sums them with a MultiProcessCollector.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: a policy decision answered locally takes about a millisecond, a
# forwarded delete whatever the backend takes.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

# The label for a request that matched no route, so that raw paths (any
# client can invent them) never become label values.
NO_ROUTE = "none"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    # A client may send any token as a method; keep the label set bounded.
    return method if method in _METHODS else "OTHER"


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def clear_multiprocess_dir(path: Path) -> None:
    """Values left by an earlier run would be summed into this one's."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def exposition_registry(own: CollectorRegistry | None = None) -> CollectorRegistry:
    """What ``/metrics`` serves: every worker's files, or this process's registry."""
    path = multiprocess_dir()
    if path is None:
        if own is None:
            raise RuntimeError(f"{MULTIPROC_ENV} is not set and no registry was given")
        return own
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return registry


class CounterMirror:
    """Publishes a count kept elsewhere into a Prometheus counter.

    The token cache and the limiter keep plain integer counts and know
    nothing of Prometheus; the mirror adds whatever they gained since it
    last looked, so the counter stays exact in multiprocess mode too.
    """

    def __init__(self, counter: Counter, read: Callable[[], int]) -> None:
        self._counter = counter
        self._read = read
        self._seen = read()

    def sync(self) -> None:
        now = self._read()
        if now > self._seen:
            self._counter.inc(now - self._seen)
        self._seen = now


class _SyncMirrors(Collector):
    """Registered first, so that a scrape of this process's registry syncs the
    mirrors before any counter is read: /metrics is exact, however the
    workers' own syncing is paced."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        self._metrics.sync_mirrors()
        return ()


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_SyncMirrors(self))
        counter, histogram = self._counter, self._histogram
        self.requests = counter(
            "gateway_requests",
            "Requests answered, by route, method, status and the gateway's decision.",
            "route", "method", "status", "decision",
        )  # fmt: skip
        self.request_duration = histogram(
            "gateway_request_duration_seconds", "Whole request, first byte in to last byte out."
        )
        self.upstream_duration = histogram(
            "gateway_upstream_duration_seconds",
            "Forwarded requests: request sent to the backend's response headers.",
        )
        self.ratelimit_decisions = counter(
            "gateway_ratelimit_decisions",
            "Rate-limit verdicts on requests that matched a rule (allowed, limited, unavailable).",
            "outcome",
        )
        self.ratelimit_fail_open = counter(
            "gateway_ratelimit_fail_open",
            "Requests counted in-process because the limit store was unreachable.",
        )
        self.ratelimit_rejections = counter(
            "gateway_ratelimit_rejections",
            "Requests refused, by each enforced rule that refused them.",
            "rule",
        )
        self.ratelimit_shadow_rejections = counter(
            "gateway_ratelimit_shadow_rejections",
            "Requests a shadow rule would have refused and let through.",
            "rule",
        )
        self.ratelimit_breaker_opened = counter(
            "gateway_ratelimit_breaker_opened",
            "Times the limit store failed and requests stopped asking it until it answered.",
        )
        self.token_cache = counter(
            "gateway_token_cache_lookups",
            "Verified-token cache look-ups, by result (hit or miss).",
            "result",
        )
        self.jwks_fetches = counter(
            "gateway_jwks_fetches", "Fetches of a JWKS key set, by outcome.", "outcome"
        )
        self.keystone_validations = counter(
            "gateway_keystone_validations",
            "Keystone tokens validated at Keystone, by outcome (valid, refused, unavailable).",
            "outcome",
        )
        self.keystone_cache = counter(
            "gateway_keystone_token_cache_lookups",
            "Keystone token look-ups by cache and result (local_hit, local_miss, shared_hit, "
            "shared_tampered).",
            "result",
        )
        self.keystone_shared_cache_errors = counter(
            "gateway_keystone_shared_cache_errors",
            "Reads or writes of the shared Keystone token cache that failed (Keystone asked).",
        )
        self.keystone_service_tokens = counter(
            "gateway_keystone_service_tokens",
            "Service tokens the gateway obtained from Keystone (start, renewal, after a 401).",
        )
        self.keystone_duration = Histogram(
            "gateway_keystone_request_duration_seconds",
            "Requests to Keystone (validations and service tokens), sent to answer read.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = counter(
            "gateway_upstream_errors",
            "Backend failures, by kind (timeout, connect, disconnected, http_5xx, ...).",
            "kind",
        )
        self.policy_shadow_refusals = counter(
            "gateway_policy_shadow_refusals",
            "Requests a shadowed policy rule would have refused and let through, by rule.",
            "rule",
        )
        self.revocation_resyncs = counter(
            "gateway_revocation_resyncs",
            "Full reloads of the revocation list from Redis (start-up and every reconnect).",
        )
        self.revocation_failures = counter(
            "gateway_revocation_failures",
            "Times following the revocation list in Redis failed (the last copy is kept).",
        )
        self.feed_dropped = counter(
            "gateway_decision_feed_dropped",
            "Decisions a worker could not hand to the dashboard (its buffer was full).",
        )
        self.identity_headers_dropped = counter(
            "gateway_client_identity_headers_dropped",
            "Requests whose client sent identity or credential look-alike headers (dropped).",
        )
        self.ratelimit_overrides_refused = counter(
            "gateway_ratelimit_overrides_refused",
            "Per-tenant overrides in Redis left out because their value is not a limit.",
        )
        self.background_failures = counter(
            "gateway_background_failures",
            "Unexpected errors in a background task (jwks, revocation, overrides), which"
            " carried on.",
            "task",
        )
        self.client_connections_refused = counter(
            "gateway_client_refusals",
            "Requests or connections refused before the chain ran, by reason"
            " (unparseable, header_timeout, over_capacity).",
            "reason",
        )
        self._mirrors: list[CounterMirror] = []
        # Labelled children by label values: prometheus_client's labels()
        # validates and locks on every call, a measurable part of a request.
        self._request_series: dict[
            tuple[str, str, int, str], tuple[Counter, Histogram, Histogram]
        ] = {}

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str) -> Histogram:
        return Histogram(
            name,
            documentation,
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def mirror(self, counter: Counter, read: Callable[[], int]) -> None:
        self._mirrors.append(CounterMirror(counter, read))

    def sync_mirrors(self) -> None:
        for mirror in self._mirrors:
            mirror.sync()

    def record_upstream_error(self, kind: str) -> None:
        self.upstream_errors.labels(kind=kind).inc()

    def record_request(
        self,
        *,
        route: str | None,
        method: str,
        status: int,
        decision: str,
        seconds: float,
        upstream_seconds: float | None,
    ) -> None:
        key = (route or NO_ROUTE, method, status, decision)
        series = self._request_series.get(key)
        if series is None:
            route_label, method_name = key[0], method_label(method)
            series = (
                self.requests.labels(route_label, method_name, str(status), decision),
                self.request_duration.labels(route_label, method_name),
                self.upstream_duration.labels(route_label, method_name),
            )
            self._request_series[key] = series
        requests, duration, upstream_duration = series
        requests.inc()
        duration.observe(seconds)
        if upstream_seconds is not None:
            upstream_duration.observe(upstream_seconds)
