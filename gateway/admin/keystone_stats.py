"""The dashboard's Keystone card: what the Keystone metrics say, summed over workers.

Read from the same snapshot /metrics renders, so with several workers the
card shows the whole gateway, as Prometheus would.
"""

from __future__ import annotations

from typing import Any

from gateway.observability.metric_types import MetricsSnapshot

_VALIDATIONS = "gateway_keystone_validations"
_LOOKUPS = "gateway_keystone_token_cache_lookups"
_LATENCY = "gateway_keystone_request_duration_seconds"


def keystone_stats(snapshot: MetricsSnapshot) -> dict[str, Any]:
    validations: dict[str, float] = {"valid": 0, "refused": 0, "unavailable": 0}
    for (outcome,), value in snapshot.counters.get(_VALIDATIONS, {}).items():
        validations[outcome] = validations.get(outcome, 0) + value
    lookups: dict[str, float] = {"local_hit": 0, "shared_hit": 0, "local_miss": 0}
    for (result,), value in snapshot.counters.get(_LOOKUPS, {}).items():
        lookups[result] = lookups.get(result, 0) + value
    latency_sum = latency_count = 0.0
    for counts, total in snapshot.histograms.get(_LATENCY, {}).values():
        latency_sum += total
        latency_count += sum(counts)
    return {
        "validations": {k: int(v) for k, v in validations.items()},
        "local_hits": int(lookups["local_hit"]),
        "shared_hits": int(lookups["shared_hit"]),
        "mean_latency_ms": round(latency_sum / latency_count * 1000, 1) if latency_count else None,
    }
