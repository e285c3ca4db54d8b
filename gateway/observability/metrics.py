"""The gateway's metrics: every family it exports, and what a request counts in.

Counting a request is one dictionary look-up and a few additions on this
process's own numbers (gateway.observability.metric_types). When
``/metrics`` is scraped the admin listener takes a ``MetricsSnapshot`` (of
this process's metrics, or of every worker's summed: the workers report
theirs over the decision feed, gateway.observability.feed) and renders it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.observability.metric_types import (
    CounterFamily,
    CounterMirror,
    CounterSeries,
    HistogramFamily,
    HistogramSeries,
    MetricsSnapshot,
)

# Seconds: a policy decision answered locally takes about a millisecond, a
# forwarded delete whatever the backend takes.
# fmt: off
# One line, so the ladder reads as one: 1, 2.5, 5 in each decade.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
# fmt: on

# The label for a request that matched no route, so that raw paths (any
# client can invent them) never become label values.
NO_ROUTE = "none"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    # A client may send any token as a method; keep the label set bounded.
    return method if method in _METHODS else "OTHER"


# A request's counter, its duration and upstream duration histograms, and
# the counter of its rate-limit verdict (None when no rule matched).
RequestSeries = tuple[CounterSeries, HistogramSeries, HistogramSeries, CounterSeries | None]


class GatewayMetrics:
    def __init__(self) -> None:
        self.families: list[CounterFamily | HistogramFamily] = []
        counter, histogram = self._counter, self._histogram
        self.requests = counter(
            "gateway_requests",
            "Requests answered, by route, method, status and the gateway's decision.",
            "route",
            "method",
            "status",
            "decision",
        )
        self.request_duration = histogram(
            "gateway_request_duration_seconds",
            "Whole request, first byte in to last byte out.",
            "route",
            "method",
        )
        self.upstream_duration = histogram(
            "gateway_upstream_duration_seconds",
            "Forwarded requests: request sent to the backend's response headers.",
            "route",
            "method",
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
        self.keystone_duration = histogram(
            "gateway_keystone_request_duration_seconds",
            "Requests to Keystone (validations and service tokens), sent to answer read.",
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
        self.revocation_outages = counter(
            "gateway_revocation_outages",
            "Times Redis became unreachable for the revocation list: the revocations last"
            " known were applied until it came back.",
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
            " (unparseable, header_timeout, over_capacity; evicted_at_capacity and"
            " evicted_per_client: closed while waiting for a request head, to make room).",
            "reason",
        )
        self._mirrors: list[CounterMirror] = []
        # The series a request counts in, by its label values: one look-up a request.
        self._request_series: dict[tuple[str | None, str, int, str, str | None], RequestSeries] = {}

    def _counter(self, name: str, documentation: str, *labels: str) -> CounterFamily:
        family = CounterFamily(name, documentation, labels)
        self.families.append(family)
        return family

    def _histogram(self, name: str, documentation: str, *labels: str) -> HistogramFamily:
        family = HistogramFamily(name, documentation, labels, LATENCY_BUCKETS)
        self.families.append(family)
        return family

    def mirror(self, series: CounterSeries | CounterFamily, read: Callable[[], int]) -> None:
        target = series.labels() if isinstance(series, CounterFamily) else series
        self._mirrors.append(CounterMirror(target, read))

    def sync_mirrors(self) -> None:
        for mirror in self._mirrors:
            mirror.sync()

    def record_upstream_error(self, kind: str) -> None:
        self.upstream_errors.labels(kind).inc()

    def record_request(
        self,
        *,
        route: str | None,
        method: str,
        status: int,
        decision: str,
        seconds: float,
        upstream_seconds: float | None,
        limiter: str | None = None,
    ) -> None:
        """Count one answered request; ``limiter`` is the rate limiter's verdict
        on it, None when no rule matched."""
        key = (route, method_label(method), status, decision, limiter)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = self._series_of(*key)
        requests, duration, upstream_duration, verdicts = series
        requests.value += 1
        duration.observe(seconds)
        if upstream_seconds is not None:
            upstream_duration.observe(upstream_seconds)
        if verdicts is not None:
            verdicts.value += 1

    def _series_of(
        self, route: str | None, method: str, status: int, decision: str, limiter: str | None
    ) -> RequestSeries:
        route_label = route or NO_ROUTE
        return (
            self.requests.labels(route_label, method, str(status), decision),
            self.request_duration.labels(route_label, method),
            self.upstream_duration.labels(route_label, method),
            None if limiter is None else self.ratelimit_decisions.labels(limiter),
        )

    def snapshot(self) -> MetricsSnapshot:
        """Every series as it stands now, mirrored counts read at this moment."""
        self.sync_mirrors()
        snapshot = MetricsSnapshot()
        for family in self.families:
            if isinstance(family, CounterFamily):
                snapshot.counters[family.name] = {k: s.value for k, s in family.series.items()}
            else:
                snapshot.histograms[family.name] = {
                    k: (list(s.counts), s.sum) for k, s in family.series.items()
                }
        return snapshot


@dataclass(frozen=True, slots=True)
class MetricsSource:
    """What ``/metrics`` serves: a snapshot taken at scrape time, and the
    families' names and help (gateway/observability/exposition.py renders it)."""

    schema: GatewayMetrics
    take: Callable[[], Awaitable[MetricsSnapshot]]


def local_source(metrics: GatewayMetrics) -> MetricsSource:
    """This process's own metrics (one worker)."""

    async def take() -> MetricsSnapshot:
        return metrics.snapshot()

    return MetricsSource(metrics, take)
