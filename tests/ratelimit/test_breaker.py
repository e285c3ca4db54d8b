"""The breaker opens on N consecutive failed round trips within a window, not on one."""

from __future__ import annotations

import asyncio

from gateway.ratelimit.breaker import CircuitBreaker
from gateway.ratelimit.store import StoreUnavailable
from tests.support.waiting import until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def answered() -> None:
    return None


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(answered, 60.0, failures=3, window=5.0, clock=clock)


async def test_one_failure_does_not_open_three_in_a_row_do() -> None:
    b = breaker(Clock())
    b.record_failure(StoreUnavailable("slow"))
    b.record_failure(StoreUnavailable("slow"))
    assert not b.is_open
    b.record_failure(StoreUnavailable("slow"))
    assert b.is_open
    assert b.opened == 1
    await b.close()


async def test_requests_sharing_one_round_trip_are_one_failure() -> None:
    b = breaker(Clock())
    shared = StoreUnavailable("one pipeline timed out")
    for _ in range(50):
        b.record_failure(shared)
    assert not b.is_open


async def test_a_success_or_the_window_passing_restarts_the_count() -> None:
    clock = Clock()
    b = breaker(clock)
    b.record_failure(StoreUnavailable("1"))
    b.record_failure(StoreUnavailable("2"))
    b.record_success()
    b.record_failure(StoreUnavailable("3"))
    b.record_failure(StoreUnavailable("4"))
    assert not b.is_open
    clock.now += 6.0
    b.record_failure(StoreUnavailable("5"))
    b.record_failure(StoreUnavailable("6"))
    assert not b.is_open
    b.record_failure(StoreUnavailable("7"))
    assert b.is_open
    await b.close()


async def test_the_probe_closes_it_when_the_store_answers() -> None:
    answers = asyncio.Event()

    async def probe() -> None:
        answers.set()

    b = CircuitBreaker(probe, 0.01, failures=1)
    b.record_failure(StoreUnavailable("down"))
    assert b.is_open
    await asyncio.wait_for(answers.wait(), 5)
    await until(lambda: not b.is_open, "the breaker to close", deadline=5.0, interval=0.005)
    await b.close()
