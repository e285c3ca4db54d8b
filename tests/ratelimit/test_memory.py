"""MemoryStore: GCRA with an injected clock, so every instant is exact."""

from __future__ import annotations

import pytest

from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.store import Check, Verdict


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


LIMIT, PERIOD = 10, 60.0
INTERVAL = PERIOD / LIMIT


def check(
    subject: str = "project:p1", rule: str = "deletes", limit: int = LIMIT, period: float = PERIOD
) -> Check:
    return Check(subject=subject, rule=rule, limit=limit, period=period)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


def take(store: MemoryStore, *checks: Check) -> Verdict:
    return store.acquire_now(checks or (check(),))


def admitted(store: MemoryStore, attempts: int, *checks: Check) -> int:
    return sum(take(store, *checks).allowed for _ in range(attempts))


async def test_async_acquire_is_the_same_decision(store: MemoryStore) -> None:
    verdict = await store.acquire([check()])
    assert verdict.allowed
    assert verdict.results[0].remaining == LIMIT - 1
    await store.close()
    # close() forgets every bucket
    assert (await store.acquire([check()])).results[0].remaining == LIMIT - 1


@pytest.mark.parametrize(
    ("limit", "period"), [(1, 1.0), (5, 60.0), (10, 60.0), (7, 3600.0), (1000, 1.0), (3, 86400.0)]
)
def test_fresh_bucket_admits_exactly_limit(store: MemoryStore, limit: int, period: float) -> None:
    c = check(limit=limit, period=period)
    for i in range(limit):
        verdict = take(store, c)
        assert verdict.allowed, f"request {i + 1} of {limit} refused"
        assert verdict.retry_after == 0.0
    refused = take(store, c)
    assert not refused.allowed
    assert refused.results[0].remaining == 0


def test_retry_after_is_time_to_the_next_cell(store: MemoryStore) -> None:
    assert admitted(store, LIMIT) == LIMIT
    verdict = take(store)
    assert not verdict.allowed
    assert verdict.retry_after == pytest.approx(INTERVAL, abs=1e-6)


def test_retry_after_shrinks_as_time_passes(store: MemoryStore, clock: Clock) -> None:
    admitted(store, LIMIT)
    clock.advance(1.0)
    # refusals are free: the wait is measured from the same bucket
    assert take(store).retry_after == pytest.approx(INTERVAL - 1.0, abs=1e-6)


def test_one_interval_later_exactly_one_more(store: MemoryStore, clock: Clock) -> None:
    assert admitted(store, LIMIT + 5) == LIMIT
    clock.advance(INTERVAL)
    assert take(store).allowed
    assert not take(store).allowed
    clock.advance(3 * INTERVAL)
    assert admitted(store, 10) == 3


def test_full_period_refills_the_whole_bucket(store: MemoryStore, clock: Clock) -> None:
    admitted(store, LIMIT)
    clock.advance(PERIOD * 5)  # idle longer than a period does not bank extra cells
    assert admitted(store, LIMIT * 2) == LIMIT


def test_all_or_nothing_across_two_checks(store: MemoryStore) -> None:
    small = check(rule="small", limit=2)
    large = check(rule="large", limit=10)
    assert take(store, small, large).allowed
    assert take(store, small, large).allowed
    before = take(store, large)  # large alone: 3 used now, 7 remaining
    assert before.allowed
    assert before.results[0].remaining == 7

    refused = take(store, small, large)
    assert not refused.allowed
    assert refused.results[0].remaining == 0
    # the large bucket was not charged for the refused request
    assert refused.results[1].remaining == 7
    after = take(store, large)
    assert after.allowed
    assert after.results[0].remaining == 6


def test_refusal_by_one_rule_does_not_charge_the_other_repeatedly(store: MemoryStore) -> None:
    small = check(rule="small", limit=1)
    large = check(rule="large", limit=5)
    assert take(store, small, large).allowed
    for _ in range(20):
        assert not take(store, small, large).allowed
    # only the one admitted request was counted against "large"
    assert admitted(store, 10, large) == 4


def test_retry_after_is_the_longest_wait_of_the_refusing_checks(store: MemoryStore) -> None:
    per_minute = check(rule="minute", limit=1, period=60.0)
    per_hour = check(rule="hour", limit=1, period=3600.0)
    assert take(store, per_minute, per_hour).allowed
    verdict = take(store, per_minute, per_hour)
    assert not verdict.allowed
    assert verdict.retry_after == pytest.approx(3600.0, abs=1e-6)


def test_subjects_and_rules_are_separate_buckets(store: MemoryStore) -> None:
    assert admitted(store, LIMIT, check(subject="project:a")) == LIMIT
    assert take(store, check(subject="project:b")).allowed
    assert take(store, check(subject="project:a", rule="other")).allowed
    assert not take(store, check(subject="project:a")).allowed


def test_remaining_and_reset_after(store: MemoryStore, clock: Clock) -> None:
    for used in range(1, LIMIT + 1):
        verdict = take(store)
        assert verdict.allowed
        result = verdict.results[0]
        assert result.remaining == LIMIT - used
        # the bucket is full again once every used cell has come back
        assert result.reset_after == pytest.approx(used * INTERVAL, abs=1e-6)
    clock.advance(2 * INTERVAL)
    verdict = take(store)
    assert verdict.allowed
    assert verdict.results[0].remaining == 1
    assert verdict.results[0].reset_after == pytest.approx(PERIOD - INTERVAL, abs=1e-6)


def test_refused_verdict_reports_the_unchanged_bucket(store: MemoryStore) -> None:
    admitted(store, LIMIT)
    verdict = take(store)
    assert not verdict.allowed
    assert verdict.results[0].remaining == 0
    assert verdict.results[0].reset_after == pytest.approx(PERIOD, abs=1e-6)


def test_no_double_burst_across_a_window_edge(store: MemoryStore) -> None:
    clock = Clock(now=59.9)
    store = MemoryStore(clock=clock)
    assert admitted(store, LIMIT) == LIMIT
    clock.now = 60.1  # a fixed one-minute window would start afresh here
    assert admitted(store, LIMIT) == 0


def burst_around(start: float, elapsed: float) -> tuple[int, int]:
    """Drain a fresh bucket at ``start``, then take all it gives ``elapsed`` later."""
    clock = Clock(now=start)
    store = MemoryStore(clock=clock)
    first = admitted(store, LIMIT * 3)
    clock.advance(elapsed)
    return first, admitted(store, LIMIT * 3)


@pytest.mark.parametrize("start", [0.0, 0.37, 59.9, 123.456, 1e6 + 0.1])
@pytest.mark.parametrize("elapsed", [0.0, 0.2, 1.0, 2.9, 6.0, 12.5, 30.0])
def test_burst_straddling_any_instant_is_bounded(start: float, elapsed: float) -> None:
    first, second = burst_around(start, elapsed)
    assert first == LIMIT
    assert first + second <= LIMIT + elapsed / INTERVAL
    # and GCRA does give back every whole cell that has come due
    assert first + second >= LIMIT + int(elapsed / INTERVAL + 1e-9)


@pytest.mark.parametrize("elapsed", [3.5, 59.9])
def test_burst_straddling_a_fraction_past_half_an_interval_is_bounded(elapsed: float) -> None:
    first, second = burst_around(0.37, elapsed)
    # fails: 10 + 1 admitted within 3.5 s (bound 10.58), 10 + 10 within 59.9 s (bound 19.98)
    assert first + second <= LIMIT + elapsed / INTERVAL


def test_no_admission_before_the_reported_retry_after(store: MemoryStore, clock: Clock) -> None:
    admitted(store, LIMIT)
    refused = take(store)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(INTERVAL)
    clock.advance(refused.retry_after * 0.6)  # 3.6 s of the 6 s the client was told to wait
    early = take(store)
    assert not early.allowed  # fails: admitted, 11 requests within 3.6 s of a 10/min bucket


def test_sweep_forgets_expired_buckets_only(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.ratelimit.memory._SWEEP_AT", 3)
    store = MemoryStore(clock=clock)
    for i in range(4):
        take(store, check(subject=f"project:old{i}", limit=1, period=1.0))
    clock.advance(2.0)
    live = check(subject="project:live", limit=2, period=60.0)
    assert take(store, live).allowed  # sweeps the four expired buckets
    assert take(store, live).allowed
    assert not take(store, live).allowed  # the live bucket survived the sweep
    for i in range(4):
        assert take(store, check(subject=f"project:old{i}", limit=1, period=1.0)).allowed
