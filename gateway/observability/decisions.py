"""The dashboard's memory: recent decisions, the delete audit trail, and
where each caller stands against its rate limits.

Records (gateway.observability.records) arrive in batches
(gateway.observability.batch), from this process (one worker) or over a
socket from every worker (gateway.observability.feed), so the log never
depends on which process made a decision. It keeps each batch as it came
(the records' texts in two blocks, the few values the overview counts) and
splits and parses a text only when the dashboard shows that record: taking
a batch costs a few appends, nothing per request. A record with an
``outcome`` (a delete) is in the audit trail too.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from bisect import bisect_left
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import orjson

from gateway.observability.batch import Batch, LimitUpdate

log = logging.getLogger("gateway.observability")

Record = Mapping[str, Any]
Run = TypeVar("Run")

# Callers whose limit state is kept; the least recently seen go first.
MAX_TRACKED_SUBJECTS = 10_000
RATE_WINDOW_SECONDS = 60.0
LATENCY_WINDOW_SECONDS = 300.0
# Search fields: an operator pastes a request id, a project or an image id.
_SEARCHED = ("request_id", "global_request_id", "project", "user", "image_id")
# What a needle may hold for a search to skip, unparsed, a text without it:
# characters JSON writes as they are, and that lower() folds alike in str and bytes.
_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


def _matches(record: Record, needle: str) -> bool:
    return any(needle in str(record.get(name) or "").lower() for name in _SEARCHED)


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    # Nearest rank: an observed value, never an interpolation between two.
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


def _parsed(text: bytes) -> Record | None:
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        log.warning("a decision record that does not parse was left out: %s", exc)
        return None
    if not isinstance(record, dict) or not isinstance(record.get("time"), int | float):
        log.warning("a malformed decision record was left out: %.200r", record)
        return None
    return record


def _found(texts: Iterable[bytes], query: str, limit: int) -> list[Record]:
    """The records among ``texts`` that match ``query``, parsed, at most ``limit``."""
    needle = query.strip().lower()
    plain = needle.encode() if set(needle) <= _PLAIN else None
    found: list[Record] = []
    for text in texts:
        # A needle of plain characters is in the text of any record it matches
        # (the text of an ASCII record, that is: str.lower() folds more).
        if plain is not None and text.isascii() and plain not in text.lower():
            continue
        record = _parsed(text)
        if record is not None and (not needle or _matches(record, needle)):
            found.append(record)
            if len(found) >= limit:
                break
    return found


class _Texts:
    """Records' JSON texts, each ending with a newline, split when first read."""

    __slots__ = ("_block", "_lines")

    def __init__(self, block: bytes) -> None:
        self._block = block
        self._lines: list[bytes] | None = None

    def __getitem__(self, index: int) -> bytes:
        if self._lines is None:
            self._lines, self._block = self._block.split(b"\n"), b""
        return self._lines[index]


class _Chunk:
    """One batch as the log keeps it."""

    __slots__ = (
        "audited",
        "audited_texts",
        "decisions",
        "durations",
        "other_texts",
        "statuses",
        "times",
    )

    def __init__(self, batch: Batch) -> None:
        self.times = batch.times
        self.durations = batch.durations
        self.statuses = batch.statuses
        self.decisions = batch.decisions
        self.audited = batch.audited
        self.audited_texts = _Texts(batch.audited_texts)
        self.other_texts = _Texts(batch.other_texts)

    def text(self, index: int) -> bytes:
        # Records before it that are audited: its place in one block or the other.
        before = bisect_left(self.audited, index)
        if before < len(self.audited) and self.audited[before] == index:
            return self.audited_texts[before]
        return self.other_texts[index - before]


class _Newest(Generic[Run]):
    """The newest ``size`` items of a stream that arrives in runs, kept as the runs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._runs: deque[tuple[Run, int]] = deque()
        # Items of the oldest run already gone, and items kept.
        self._gone = 0
        self._kept = 0

    def __len__(self) -> int:
        return self._kept

    def add(self, run: Run, items: int) -> None:
        self._runs.append((run, items))
        self._kept += items
        while self._kept > self.size:
            excess, left = self._kept - self.size, self._runs[0][1] - self._gone
            if excess < left:
                self._gone += excess
                self._kept -= excess
            else:
                self._runs.popleft()
                self._gone = 0
                self._kept -= left

    def runs(self) -> Iterator[tuple[Run, int]]:
        """Oldest first, each run with its first item still kept."""
        for position, (run, _) in enumerate(self._runs):
            yield run, self._gone if position == 0 else 0

    def newest_first(self) -> Iterator[tuple[Run, int]]:
        """Each item kept as (its run, its index in the run)."""
        oldest = len(self._runs) - 1
        for position, (run, items) in enumerate(reversed(self._runs)):
            first = self._gone if position == oldest else 0
            for index in range(items - 1, first - 1, -1):
                yield run, index


class DecisionLog:
    def __init__(self, size: int, before_read: Callable[[], None] | None = None) -> None:
        """``before_read``: called before every read, for a source that hands
        its records over in batches to bring the log up to date first."""
        self._before_read = before_read
        self._decisions: _Newest[_Chunk] = _Newest(size)
        # The audit records' block of each batch: what the audit trail keeps of it.
        self._audit: _Newest[_Texts] = _Newest(size)
        self._limits: OrderedDict[tuple[str, ...], LimitUpdate] = OrderedDict()
        self._limited_counts: dict[tuple[str, ...], int] = {}

    def __len__(self) -> int:
        """Decisions kept."""
        self._up_to_date()
        return len(self._decisions)

    def _up_to_date(self) -> None:
        if self._before_read is not None:
            self._before_read()

    def add(self, batch: Batch) -> None:
        chunk = _Chunk(batch)
        self._decisions.add(chunk, len(batch))
        if batch.audited:
            self._audit.add(chunk.audited_texts, len(batch.audited))
        self._track_limits(batch.limits)

    def _track_limits(self, updates: list[LimitUpdate]) -> None:
        for update in updates:
            key = update[:2]
            if limited_count := update[7]:
                self._limited_counts[key] = self._limited_counts.get(key, 0) + limited_count
            self._limits[key] = update
            self._limits.move_to_end(key)
        while len(self._limits) > MAX_TRACKED_SUBJECTS:
            old, _ = self._limits.popitem(last=False)
            self._limited_counts.pop(old, None)

    def search(self, query: str = "", limit: int = 100) -> list[Record]:
        """Newest first; ``query`` matches part of a request id, project, user or image."""
        self._up_to_date()
        texts = (chunk.text(index) for chunk, index in self._decisions.newest_first())
        return _found(texts, query, limit)

    def audit_trail(self, query: str = "", limit: int = 100) -> list[Record]:
        self._up_to_date()
        texts = (block[index] for block, index in self._audit.newest_first())
        return _found(texts, query, limit)

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
        self._up_to_date()
        now = time.time() if now is None else now
        needle = query.strip().lower()
        rows: list[dict[str, Any]] = []
        for update in self._limits.values():
            subject, rule, allowed, period, remaining, at, limited, _, counts = update
            if needle and needle not in subject.lower() and needle not in rule.lower():
                continue
            left = max(0.0, at + period - now)
            used = allowed - max(0, min(allowed, remaining)) if left else 0
            # A byte rule refuses what would overdraw it, bytes left or not.
            limited_now = limited and (used >= allowed or (counts == "bytes" and left > 0))
            rows.append(
                {
                    "subject": subject,
                    "rule": rule,
                    "limit": allowed,
                    "period": period,
                    "used": used,
                    "remaining": allowed - used,
                    "full_in": round(left, 1),
                    "last_seen": at,
                    "limited_now": limited_now,
                    "limited_count": self._limited_counts.get((subject, rule), 0),
                    "counts": counts,
                }
            )
        rows.sort(key=lambda r: (-r["used"] / r["limit"], r["subject"], r["rule"]))
        return rows[:limit]

    def overview(self, now: float | None = None) -> dict[str, Any]:
        self._up_to_date()
        now = time.time() if now is None else now
        recent = [
            kept
            for chunk, first in self._decisions.runs()
            for kept in zip(
                chunk.times[first:],
                chunk.durations[first:],
                chunk.statuses[first:],
                chunk.decisions[first:],
                strict=True,
            )
            if now - kept[0] <= LATENCY_WINDOW_SECONDS
        ]
        last_minute = sum(1 for e in recent if now - e[0] <= RATE_WINDOW_SECONDS)
        durations = sorted(float(e[1]) for e in recent)
        return {
            "window_seconds": LATENCY_WINDOW_SECONDS,
            "requests": len(recent),
            "rate_per_second": round(last_minute / RATE_WINDOW_SECONDS, 3),
            "status_mix": _count(f"{int(e[2]) // 100}xx" for e in recent),
            "decision_mix": _count(e[3] for e in recent),
            "p50_ms": _percentile(durations, 0.50),
            "p99_ms": _percentile(durations, 0.99),
            "mean_ms": round(statistics.fmean(durations), 3) if durations else None,
        }


def _count(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))
