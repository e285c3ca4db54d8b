"""The dashboard's Keystone card: what the Keystone metrics say, summed over workers.

Read from the same registry /metrics serves, so with several workers the
card shows the whole gateway, as Prometheus would.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

_VALIDATIONS = "gateway_keystone_validations_total"
_LOOKUPS = "gateway_keystone_token_cache_lookups_total"
_LATENCY = "gateway_keystone_request_duration_seconds"


def keystone_stats(registry: CollectorRegistry) -> dict[str, Any]:
    validations: dict[str, float] = {"valid": 0, "refused": 0, "unavailable": 0}
    lookups: dict[str, float] = {"local_hit": 0, "shared_hit": 0, "local_miss": 0}
    latency_sum = latency_count = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == _VALIDATIONS:
                outcome = sample.labels.get("outcome", "")
                validations[outcome] = validations.get(outcome, 0) + sample.value
            elif sample.name == _LOOKUPS:
                result = sample.labels.get("result", "")
                lookups[result] = lookups.get(result, 0) + sample.value
            elif sample.name == f"{_LATENCY}_sum":
                latency_sum += sample.value
            elif sample.name == f"{_LATENCY}_count":
                latency_count += sample.value
    return {
        "validations": {k: int(v) for k, v in validations.items()},
        "local_hits": int(lookups["local_hit"]),
        "shared_hits": int(lookups["shared_hit"]),
        "mean_latency_ms": round(latency_sum / latency_count * 1000, 1) if latency_count else None,
    }
