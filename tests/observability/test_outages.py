"""An outage in the log: its start, a count at most once per interval, its end."""

from __future__ import annotations

import logging

import pytest

from gateway.observability.outages import Outage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.outage"]


def test_an_outage_logs_its_start_a_count_per_interval_and_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage("Redis (rate limits)", logging.getLogger("test.outage"), 10.0, clock=clock)
    outage.recovered()  # up all along: nothing to say
    for _ in range(500):  # a second of failures under load
        outage.failed("Connection refused")
        clock.now += 0.002
    clock.now = 111.0
    outage.failed("Connection refused")
    for _ in range(3):
        outage.failed("Connection refused")
    clock.now = 142.5
    outage.recovered()
    outage.recovered()

    assert lines(caplog) == [
        "Redis (rate limits) unavailable: Connection refused",
        "Redis (rate limits) still unavailable after 11.0s, 500 failure(s) since the last line:"
        " Connection refused",
        "Redis (rate limits) recovered after 42.5s down, 504 failure(s)",
    ]
    assert outage.count == 504
    assert not outage.down


def test_a_new_outage_after_a_recovery_starts_its_own_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage("Keystone", logging.getLogger("test.outage"), 60.0, clock=clock)
    outage.failed("timed out", request_id="req-1")
    clock.now += 1
    outage.recovered()
    clock.now += 5
    outage.failed("timed out")
    clock.now += 2
    outage.recovered("resynced")

    assert lines(caplog)[1:] == [
        "Keystone recovered after 1.0s down, 1 failure(s)",
        "Keystone unavailable: timed out",
        "Keystone recovered after 2.0s down, 1 failure(s); resynced",
    ]
    assert (outage.outages, outage.count) == (2, 2)
    assert caplog.records[0].request_id == "req-1"  # type: ignore[attr-defined]
