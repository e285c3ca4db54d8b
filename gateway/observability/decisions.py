"""The dashboard's memory: recent decisions, the delete audit trail, and
where each caller stands against its rate limits.

Records (gateway.observability.records) arrive as dicts, from this process
(one worker) or over a socket from every worker (gateway.observability.feed),
so the log never depends on which process made a decision. A record with an
``outcome`` (a delete) is in the audit trail too.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

Record = Mapping[str, Any]

# Callers whose limit state is kept; the least recently seen go first.
MAX_TRACKED_SUBJECTS = 10_000
RATE_WINDOW_SECONDS = 60.0
LATENCY_WINDOW_SECONDS = 300.0
# Search fields: an operator pastes a request id, a project or an image id.
_SEARCHED = ("request_id", "global_request_id", "project", "user", "image_id")


def _matches(record: Record, needle: str) -> bool:
    return any(needle in str(record.get(name) or "").lower() for name in _SEARCHED)


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    # Nearest rank: an observed value, never an interpolation between two.
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


class DecisionLog:
    def __init__(self, size: int) -> None:
        self.decisions: deque[Record] = deque(maxlen=size)
        self.audit: deque[Record] = deque(maxlen=size)
        self._limits: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._limited_counts: dict[tuple[str, str], int] = {}

    def add(self, record: Record) -> None:
        self.decisions.append(record)
        if record.get("outcome") is not None:
            self.audit.append(record)
        self._track_limits(record)

    def _track_limits(self, record: Record) -> None:
        for state in record.get("limits") or ():
            key = (str(state["subject"]), str(state["rule"]))
            limited = record.get("limiter") == "limited" and state["remaining"] == 0
            if limited:
                self._limited_counts[key] = self._limited_counts.get(key, 0) + 1
            self._limits[key] = {**state, "at": record["time"], "limited": limited}
            self._limits.move_to_end(key)
        while len(self._limits) > MAX_TRACKED_SUBJECTS:
            old, _ = self._limits.popitem(last=False)
            self._limited_counts.pop(old, None)

    def search(self, query: str = "", limit: int = 100) -> list[Record]:
        """Newest first; ``query`` matches part of a request id, project, user or image."""
        needle = query.strip().lower()
        found: list[Record] = []
        for record in reversed(self.decisions):
            if not needle or _matches(record, needle):
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    def audit_trail(self, query: str = "", limit: int = 100) -> list[Record]:
        needle = query.strip().lower()
        selected = (r for r in reversed(self.audit) if not needle or _matches(r, needle))
        return [r for _, r in zip(range(limit), selected, strict=False)]

    def limit_states(
        self, query: str = "", limit: int = 100, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Each caller and rule as of now, closest to its limit first.

        ``query`` matches part of the caller (``project:p1``) or the rule
        name.

        The sliding window keeps one timestamp per admission; the record of
        the last decision has only the count then. So ``used`` is that count
        until a whole period has passed since, then zero: an upper bound,
        since earlier admissions may have left the window in between.
        """
        now = time.time() if now is None else now
        needle = query.strip().lower()
        rows = []
        for (subject, rule), state in self._limits.items():
            if needle and needle not in subject.lower() and needle not in rule.lower():
                continue
            left = max(0.0, state["at"] + state["period"] - now)
            used = state["limit"] - max(0, min(state["limit"], state["remaining"])) if left else 0
            rows.append(
                {
                    "subject": subject,
                    "rule": rule,
                    "limit": state["limit"],
                    "period": state["period"],
                    "used": used,
                    "remaining": state["limit"] - used,
                    "full_in": round(left, 1),
                    "last_seen": state["at"],
                    "limited_now": state["limited"] and used >= state["limit"],
                    "limited_count": self._limited_counts.get((subject, rule), 0),
                }
            )
        rows.sort(key=lambda r: (-r["used"] / r["limit"], r["subject"], r["rule"]))
        return rows[:limit]

    def overview(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        recent = [r for r in self.decisions if now - r["time"] <= LATENCY_WINDOW_SECONDS]
        last_minute = sum(1 for r in recent if now - r["time"] <= RATE_WINDOW_SECONDS)
        durations = sorted(float(r["duration_ms"]) for r in recent)
        return {
            "window_seconds": LATENCY_WINDOW_SECONDS,
            "requests": len(recent),
            "rate_per_second": round(last_minute / RATE_WINDOW_SECONDS, 3),
            "status_mix": _status_mix(recent),
            "decision_mix": _count(str(r["decision"]) for r in recent),
            "p50_ms": _percentile(durations, 0.50),
            "p99_ms": _percentile(durations, 0.99),
            "mean_ms": round(statistics.fmean(durations), 3) if durations else None,
        }


def _count(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _status_mix(records: list[Record]) -> dict[str, int]:
    return _count(f"{int(r['status']) // 100}xx" for r in records)
