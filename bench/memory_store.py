"""The in-process limit store's cost per decision, with few windows and with a million.

    python bench/memory_store.py [--windows 1000000] [--decisions 200000]

Side by side, in one run: the same decisions against a store holding 1,000
windows and against one holding ``--windows`` (half of them idle, so
expiry has work to do on every decision). Expiry is amortized, so the
ratio should stay near 1; a store that swept every window past a size
would show it growing with the number of windows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.store import LimitCheck


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def filled(windows: int, clock: Clock) -> MemoryStore:
    store = MemoryStore(clock=clock)
    # Half the windows by the second (idle a second later), half by the hour.
    for i in range(windows):
        period = 1.0 if i % 2 else 3600.0
        store.decide_now((LimitCheck(f"project:p{i}", "r", 10, period),), count=True)
    clock.now += 2.0
    return store


def seconds_per_decision(store: MemoryStore, clock: Clock, decisions: int) -> float:
    checks = [
        (LimitCheck(f"project:live{i % 1000}", "live", 1_000_000, 60.0),) for i in range(1000)
    ]
    started = time.perf_counter()
    for i in range(decisions):
        clock.now += 1e-6
        store.decide_now(checks[i % 1000], count=True)
    return (time.perf_counter() - started) / decisions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--decisions", type=int, default=200_000)
    args = parser.parse_args()
    small_clock, large_clock = Clock(), Clock()
    small = filled(1000, small_clock)
    large = filled(args.windows, large_clock)
    small_cost = seconds_per_decision(small, small_clock, args.decisions)
    large_cost = seconds_per_decision(large, large_clock, args.decisions)
    print(f"1,000 windows:      {small_cost * 1e6:6.2f} µs per decision")
    print(f"{args.windows:,} windows: {large_cost * 1e6:6.2f} µs per decision")
    print(f"ratio: {large_cost / small_cost:.2f}x; windows left: {len(large):,}")


if __name__ == "__main__":
    main()
