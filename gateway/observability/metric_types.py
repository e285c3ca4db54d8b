"""What metrics are made of: counters and histograms of plain numbers, and snapshots.

Counting is a dictionary look-up and a few additions on this process's own
numbers; nothing is locked, written or formatted per request. A
``MetricsSnapshot`` is every series' value at one moment: what a scrape
renders, what a worker reports, and what several sum to. Nothing goes into
prometheus_client's global registry. The gateway's own families are
gateway.observability.metrics.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Labels = tuple[str, ...]


class CounterSeries:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramSeries:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # Per bucket, not cumulative (the last one is +Inf): cumulated when rendered.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


@dataclass
class CounterFamily:
    name: str
    documentation: str
    labelnames: Labels
    series: dict[Labels, CounterSeries] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labelnames:
            # Exported as 0 before anything counts, as prometheus_client did.
            self.series[()] = CounterSeries()

    def labels(self, *values: str, **by_name: str) -> CounterSeries:
        if by_name:
            if values or set(by_name) != set(self.labelnames):
                raise ValueError(f"{self.name} takes the labels {self.labelnames}")
            values = tuple(by_name[name] for name in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}, not {values}")
        key = values
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = CounterSeries()
        return series

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)


@dataclass
class HistogramFamily:
    name: str
    documentation: str
    labelnames: Labels
    buckets: tuple[float, ...]
    series: dict[Labels, HistogramSeries] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labelnames:
            self.series[()] = HistogramSeries(self.buckets)

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def labels(self, *values: str) -> HistogramSeries:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}, not {values}")
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = HistogramSeries(self.buckets)
        return series


@dataclass
class MetricsSnapshot:
    """Every series' value at one moment: what a scrape renders, what a worker
    reports to the admin process (as JSON), and what several sum to."""

    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    # Per bucket counts (not cumulative, +Inf last) and the sum.
    histograms: dict[str, dict[Labels, tuple[list[int], float]]] = field(default_factory=dict)

    def add(self, other: MetricsSnapshot) -> None:
        for name, series in other.counters.items():
            mine = self.counters.setdefault(name, {})
            for labels, value in series.items():
                mine[labels] = mine.get(labels, 0.0) + value
        for name, hseries in other.histograms.items():
            hmine = self.histograms.setdefault(name, {})
            for labels, (counts, total) in hseries.items():
                if labels in hmine:
                    have, have_total = hmine[labels]
                    if len(have) != len(counts):
                        raise ValueError(f"{name}: {len(counts)} buckets, expected {len(have)}")
                    hmine[labels] = (
                        [a + b for a, b in zip(have, counts, strict=True)],
                        have_total + total,
                    )
                else:
                    hmine[labels] = (list(counts), total)

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": {n: [[list(k), v] for k, v in s.items()] for n, s in self.counters.items()},
            "histograms": {
                n: [[list(k), c, t] for k, (c, t) in s.items()] for n, s in self.histograms.items()
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> MetricsSnapshot:
        """From what ``to_json`` wrote; anything else is a ValueError."""
        try:
            counters = {
                str(name): {_labels(k): float(v) for k, v in series}
                for name, series in data["counters"].items()
            }
            histograms = {
                str(name): {_labels(k): ([int(c) for c in counts], float(t)) for k, counts, t in s}
                for name, s in data["histograms"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a metrics snapshot: {exc!r}") from None
        return cls(counters, histograms)


def _labels(values: Any) -> Labels:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"label values must be a list of strings, not {values!r}")
    return tuple(values)


class CounterMirror:
    """Publishes a count kept elsewhere as a counter series.

    The token cache and the limiter keep plain integer counts and know
    nothing of metrics; the mirror adds whatever they gained since it last
    looked. Mirrors are synced when a snapshot is taken, so a scrape sees
    the counts as they are then, on an idle gateway too.
    """

    def __init__(self, series: CounterSeries, read: Callable[[], int]) -> None:
        self._series = series
        self._read = read
        self._seen = read()

    def sync(self) -> None:
        now = self._read()
        if now > self._seen:
            self._series.inc(now - self._seen)
        self._seen = now
