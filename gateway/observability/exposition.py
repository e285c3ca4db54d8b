"""The Prometheus text format of a metrics snapshot.

Only the process that serves ``/metrics`` imports this (and with it
prometheus_client); workers count in gateway.observability.metrics alone.
Nothing goes into prometheus_client's global registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway.observability.metric_types import CounterFamily, MetricsSnapshot
from gateway.observability.metrics import GatewayMetrics, MetricsSource


class _SnapshotFamilies(Collector):
    def __init__(self, schema: GatewayMetrics, snapshot: MetricsSnapshot) -> None:
        self._schema = schema
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for family in self._schema.families:
            if isinstance(family, CounterFamily):
                counter = CounterMetricFamily(
                    family.name, family.documentation, labels=family.labelnames
                )
                for labels, value in sorted(self._snapshot.counters.get(family.name, {}).items()):
                    counter.add_metric(labels, value)
                yield counter
            else:
                histogram = HistogramMetricFamily(
                    family.name, family.documentation, labels=family.labelnames
                )
                histograms = self._snapshot.histograms.get(family.name, {})
                for labels, (counts, total) in sorted(histograms.items()):
                    histogram.add_metric(labels, _cumulative(family.buckets, counts), total)
                yield histogram


def _cumulative(bounds: Iterable[float], counts: list[int]) -> list[tuple[str, float]]:
    edges = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
    running, buckets = 0, []
    for edge, count in zip(edges, counts, strict=True):
        running += count
        buckets.append((edge, float(running)))
    return buckets


def render(schema: GatewayMetrics, snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text format of ``snapshot``; names and help from ``schema``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotFamilies(schema, snapshot))
    return generate_latest(registry)


async def exposition(source: MetricsSource) -> bytes:
    """``source``'s snapshot as of now, rendered."""
    return render(source.schema, await source.take())
