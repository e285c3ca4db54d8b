"""MemoryStore: the sliding-window log with an injected clock, so every instant is exact."""

from __future__ import annotations

import pytest

from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.store import LimitCheck, Verdict


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


LIMIT, PERIOD = 10, 60.0


def check(
    subject: str = "project:p1", rule: str = "deletes", limit: int = LIMIT, period: float = PERIOD
) -> LimitCheck:
    return LimitCheck(subject=subject, rule=rule, limit=limit, period=period)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


def take(store: MemoryStore, *checks: LimitCheck) -> Verdict:
    return store.decide_now(checks or (check(),), count=True)


def admitted(store: MemoryStore, attempts: int, *checks: LimitCheck) -> int:
    return sum(take(store, *checks).allowed for _ in range(attempts))


async def test_async_acquire_is_the_same_decision(store: MemoryStore) -> None:
    verdict = await store.acquire([check()])
    assert verdict.allowed
    assert verdict.results[0].remaining == LIMIT - 1
    await store.close()
    # close() forgets every window
    assert (await store.acquire([check()])).results[0].remaining == LIMIT - 1


@pytest.mark.parametrize(
    ("limit", "period"), [(1, 1.0), (5, 60.0), (10, 60.0), (7, 3600.0), (1000, 1.0), (3, 86400.0)]
)
def test_fresh_window_admits_exactly_limit(store: MemoryStore, limit: int, period: float) -> None:
    c = check(limit=limit, period=period)
    for i in range(limit):
        verdict = take(store, c)
        assert verdict.allowed, f"request {i + 1} of {limit} refused"
        assert verdict.retry_after == 0.0
    refused = take(store, c)
    assert not refused.allowed
    assert refused.results[0].remaining == 0


def test_retry_after_is_when_the_oldest_admission_leaves(store: MemoryStore) -> None:
    assert admitted(store, LIMIT) == LIMIT
    verdict = take(store)
    assert not verdict.allowed
    assert verdict.retry_after == pytest.approx(PERIOD, abs=1e-6)


def test_retry_after_shrinks_as_time_passes(store: MemoryStore, clock: Clock) -> None:
    admitted(store, LIMIT)
    clock.advance(1.0)
    # refusals are free: the wait is measured from the same admissions
    assert take(store).retry_after == pytest.approx(PERIOD - 1.0, abs=1e-6)


def test_each_admission_returns_one_period_after_it_was_made(
    store: MemoryStore, clock: Clock
) -> None:
    assert admitted(store, 4) == 4
    clock.advance(10.0)
    assert admitted(store, 10) == 6
    clock.advance(PERIOD - 10.0)  # the first four have left, the six have not
    assert admitted(store, 10) == 4
    clock.advance(10.0)
    assert admitted(store, 10) == 6


def test_full_period_empties_the_window(store: MemoryStore, clock: Clock) -> None:
    admitted(store, LIMIT)
    clock.advance(PERIOD * 5)  # idle longer than a period does not bank extra
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
    # the large window was not charged for the refused request
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


def test_subjects_and_rules_are_separate_windows(store: MemoryStore) -> None:
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
        # one more comes back when the oldest admission leaves the window
        assert result.reset_after == pytest.approx(PERIOD - (used - 1), abs=1e-6)
        clock.advance(1.0)
    clock.advance(PERIOD - LIMIT + 1.0)  # the first two have left
    verdict = take(store)
    assert verdict.allowed
    assert verdict.results[0].remaining == 1
    assert verdict.results[0].reset_after == pytest.approx(1.0, abs=1e-6)


def test_refused_verdict_reports_the_unchanged_window(store: MemoryStore) -> None:
    admitted(store, LIMIT)
    verdict = take(store)
    assert not verdict.allowed
    assert verdict.results[0].remaining == 0
    assert verdict.results[0].reset_after == pytest.approx(PERIOD, abs=1e-6)


def test_no_double_burst_across_a_window_edge() -> None:
    clock = Clock(now=59.9)
    store = MemoryStore(clock=clock)
    assert admitted(store, LIMIT) == LIMIT
    clock.now = 60.1  # a fixed one-minute window would start afresh here
    assert admitted(store, LIMIT) == 0


def burst_around(start: float, elapsed: float) -> tuple[int, int]:
    """Fill a fresh window at ``start``, then take all it gives ``elapsed`` later."""
    clock = Clock(now=start)
    store = MemoryStore(clock=clock)
    first = admitted(store, LIMIT * 3)
    clock.advance(elapsed)
    return first, admitted(store, LIMIT * 3)


@pytest.mark.parametrize("start", [0.0, 0.37, 59.9, 123.456, 1e6 + 0.1])
@pytest.mark.parametrize("elapsed", [0.0, 0.2, 1.0, 2.9, 6.0, 12.5, 30.0, 59.9])
def test_burst_straddling_any_instant_is_bounded(start: float, elapsed: float) -> None:
    first, second = burst_around(start, elapsed)
    assert first == LIMIT
    # any span shorter than the period holds at most the limit
    assert first + second == LIMIT


@pytest.mark.parametrize("start", [0.0, 0.37, 1e6 + 0.1])
def test_a_whole_period_later_the_limit_again(start: float) -> None:
    assert burst_around(start, PERIOD) == (LIMIT, LIMIT)


def test_no_admission_before_the_reported_retry_after(store: MemoryStore, clock: Clock) -> None:
    admitted(store, LIMIT)
    refused = take(store)
    assert not refused.allowed
    clock.advance(refused.retry_after * 0.99)
    assert not take(store).allowed
    clock.advance(refused.retry_after * 0.01)
    assert take(store).allowed


def test_idle_windows_are_forgotten_a_few_per_decision_live_ones_kept(clock: Clock) -> None:
    store = MemoryStore(clock=clock)
    for i in range(8):
        take(store, check(subject=f"project:old{i}", limit=1, period=1.0))
    live = check(subject="project:live", limit=2, period=60.0)
    assert take(store, live).allowed
    clock.advance(2.0)
    assert len(store) == 9
    # Each decision drops at most a few idle windows, never a live one.
    assert take(store, live).allowed
    assert 1 < len(store) < 9
    while len(store) > 1:
        assert not take(store, live).allowed
    assert not take(store, live).allowed  # the live window survived
    for i in range(8):
        assert take(store, check(subject=f"project:old{i}", limit=1, period=1.0)).allowed
