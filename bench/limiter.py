"""Limiter decisions per second in one process, against a redis-server it starts.

    python bench/limiter.py [--decisions 100000] [--concurrency 500]

Side by side, in one run, on the same Redis and the same workload (every
decision exact: the sliding-window script, Redis TIME):

- coalesced: ``RedisStore.acquire``, which sends every check made in one
  event-loop turn to Redis in one pipeline;
- naive: one ``EVALSHA`` round trip per decision, same script, same
  concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config import RedisConfig
from gateway.ratelimit.redis_store import SLIDING_WINDOW_SCRIPT, RedisStore
from gateway.ratelimit.store import LimitCheck

SUBJECTS = 1000
LIMIT = 1_000_000
PERIOD = 60.0

Decide = Callable[[LimitCheck], Awaitable[bool]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.02)
    return process, f"redis://127.0.0.1:{port}/0"


async def run(decide: Decide, prefix: str, decisions: int, concurrency: int) -> float:
    """Decisions per second, ``concurrency`` callers at a time."""
    next_index = 0

    async def caller() -> None:
        nonlocal next_index
        while next_index < decisions:
            i = next_index
            next_index += 1
            await decide(LimitCheck(f"project:{prefix}{i % SUBJECTS}", "bench", LIMIT, PERIOD))

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return decisions / (time.perf_counter() - started)


async def main(decisions: int, concurrency: int, url: str) -> None:
    store = RedisStore(RedisConfig(url=url, timeout=5, key_prefix="coalesced"))
    naive_client = aioredis.from_url(url, max_connections=concurrency)
    sha = await naive_client.script_load(SLIDING_WINDOW_SCRIPT)
    assert sha == hashlib.sha1(SLIDING_WINDOW_SCRIPT.encode()).hexdigest()

    async def coalesced(check: LimitCheck) -> bool:
        return (await store.acquire([check])).allowed

    async def naive(check: LimitCheck) -> bool:
        key = f"naive:window:{{{check.subject}}}:{check.rule}"
        reply = await naive_client.evalsha(
            sha, 1, key, "1", check.limit, int(check.period * 1e6), 1
        )
        return bool(reply[0] == 1)

    # Warm both paths (connections, script cache) before measuring.
    await run(coalesced, "warm", 2000, concurrency)
    await run(naive, "warm", 2000, concurrency)
    coalesced_rate = await run(coalesced, "c", decisions, concurrency)
    naive_rate = await run(naive, "n", decisions, concurrency)
    await store.close()
    await naive_client.aclose()

    print(f"{decisions} decisions, {concurrency} concurrent callers, {SUBJECTS} subjects, "
          f"hiredis={'yes' if _has_hiredis() else 'no'}")  # fmt: skip
    print(f"{'path':<34}{'decisions/s':>14}")
    print(f"{'coalesced pipeline (RedisStore)':<34}{coalesced_rate:>14,.0f}")
    print(f"{'naive one EVALSHA per decision':<34}{naive_rate:>14,.0f}")
    print(f"ratio coalesced/naive: {coalesced_rate / naive_rate:.2f}x")


def _has_hiredis() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server, redis_url = start_redis(workdir)
        try:
            asyncio.run(main(args.decisions, args.concurrency, redis_url))
        finally:
            server.terminate()
            server.wait()
