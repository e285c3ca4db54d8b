"""What a Redis rate-limit decision costs, in one process, against a redis-server it starts.

    python -m bench.limiter [--decisions 20000] [--concurrency 16,500]
        [--rounds 3] [--baseline main]

Two paths, each with ``concurrency`` callers at a time over 1000 projects,
every decision exact (the sliding-window script, Redis TIME):

- ``store``: ``RedisStore.acquire`` with one check, which sends every
  decision made in one event-loop turn to Redis together;
- ``limiter``: ``RateLimiter.decide`` for a DELETE of an image under the
  shipped rules (config/gateway.yaml: image-deletes by project, and
  image-uploads, which a DELETE does not match), what the rate-limit
  middleware calls per request.

With ``--baseline REF`` (a git commit, branch or tag of this repository) the
same runs from that commit's tree too, side by side: rounds alternate
between the trees, and every run is its own process on the same Redis. Each
run prints decisions per second, the CPU time of the deciding process per
decision (the event loop and the callers included: the same for both
trees) and redis-server's CPU time per decision; then the medians over the
rounds and the ratios. A noisy machine shows as a spread between rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

SUBJECTS = 1000
PERIOD = 60.0
HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
PATHS = ("store", "limiter")


def start_redis(workdir: str, port: int) -> subprocess.Popen[bytes]:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.02)


# The child: one run in the tree PYTHONPATH names.


def redis_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def child(args: argparse.Namespace) -> dict[str, float]:
    import gateway
    from gateway.authn.identity import Identity
    from gateway.config import MAX_LIMIT, RateLimitConfig
    from gateway.ratelimit.limiter import RateLimiter
    from gateway.ratelimit.redis_store import RedisStore
    from gateway.ratelimit.store import LimitCheck

    assert Path(gateway.__file__).is_relative_to(args.tree), gateway.__file__
    config = RateLimitConfig.model_validate(
        {
            "store": "redis",
            "redis": {"url": args.url, "timeout": 5, "key_prefix": args.prefix},
            "rules": [
                {
                    "name": "image-deletes",
                    "routes": ["delete_image"],
                    "unit": "minute",
                    "value": MAX_LIMIT,
                },
                {
                    "name": "image-uploads",
                    "routes": ["upload_image", "stage"],
                    "unit": "hour",
                    "value": 100,
                },
            ],
        }
    )
    assert config.redis is not None
    store = RedisStore(config.redis)
    limiter = RateLimiter(config, store)
    checks = [LimitCheck(f"project:p{i}", "bench", MAX_LIMIT, PERIOD) for i in range(SUBJECTS)]
    identities = [Identity(f"p{i}", f"u{i}", frozenset()) for i in range(SUBJECTS)]
    paths = [f"/v2/images/{uuid.uuid4()}" for _ in range(SUBJECTS)]

    async def by_store(i: int) -> None:
        assert (await store.acquire([checks[i % SUBJECTS]])).allowed

    async def by_limiter(i: int) -> None:
        j = i % SUBJECTS
        decision = await limiter.decide(
            "DELETE", paths[j], identities[j], "127.0.0.1", "bench", "delete_image"
        )
        assert decision is not None
        assert decision.allowed

    decide = by_store if args.path == "store" else by_limiter

    async def run(decisions: int) -> None:
        next_index = 0

        async def caller() -> None:
            nonlocal next_index
            while next_index < decisions:
                i = next_index
                next_index += 1
                await decide(i)

        await asyncio.gather(*(caller() for _ in range(args.concurrency)))

    await run(2000)  # connections, the script cache, the first keys
    cpu, redis_before, started = time.process_time(), redis_cpu(args.redis_pid), time.perf_counter()
    await run(args.decisions)
    elapsed = time.perf_counter() - started
    cpu, redis_used = time.process_time() - cpu, redis_cpu(args.redis_pid) - redis_before
    await limiter.close()
    return {
        "rate": args.decisions / elapsed,
        "cpu_us": cpu / args.decisions * 1e6,
        "redis_us": redis_used / args.decisions * 1e6,
    }


# The parent: rounds of children, the report.


def one_run(
    tree: Path, path: str, concurrency: int, url: str, redis_pid: int, decisions: int
) -> dict[str, float]:
    command = [
        sys.executable,
        str(HERE),
        "--child",
        "--tree",
        str(tree),
        "--path",
        path,
        "--url",
        url,
        "--redis-pid",
        str(redis_pid),
        "--decisions",
        str(decisions),
        "--concurrency",
        str(concurrency),
        "--prefix",
        uuid.uuid4().hex[:8],
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def report(
    runs: dict[tuple[str, str, int], list[dict[str, float]]], names: list[str], baseline: str
) -> None:
    print(
        f"{'tree':<16}{'path':<9}{'callers':>8}{'decisions/s':>13}{'CPU-µs/dec':>12}"
        f"{'redis-µs/dec':>14}   (median; rounds)"
    )
    for (name, path, concurrency), results in runs.items():
        rate, cpu, red = (
            statistics.median(r[k] for r in results) for k in ("rate", "cpu_us", "redis_us")
        )
        rounds = " ".join(f"{r['cpu_us']:.1f}" for r in results)
        print(
            f"{name:<16}{path:<9}{concurrency:>8}{rate:>13,.0f}{cpu:>12.1f}{red:>14.1f}"
            f"   (CPU-µs: {rounds})"
        )
    if len(names) < 2:
        return
    print(f"\nratios, this tree / {baseline} (medians):")
    for (name, path, concurrency), results in runs.items():
        if name != names[0]:
            continue
        base = runs[(names[1], path, concurrency)]
        mine = {k: statistics.median(r[k] for r in results) for k in results[0]}
        theirs = {k: statistics.median(r[k] for r in base) for k in base[0]}
        print(
            f"  {path:<8}{concurrency:>4} callers: decisions/s "
            f"{mine['rate'] / theirs['rate']:.2f}x, CPU per decision "
            f"{mine['cpu_us'] / theirs['cpu_us']:.2f}x, redis CPU per decision "
            f"{mine['redis_us'] / theirs['redis_us']:.2f}x"
        )


def parent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from bench.harness.processes import checkout, free_port

    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": REPO}
        if args.baseline:
            trees[args.baseline] = checkout(args.baseline, Path(tmp))
        names = list(trees)
        port = free_port()
        server = start_redis(tmp, port)
        url = f"redis://127.0.0.1:{port}/0"
        runs: dict[tuple[str, str, int], list[dict[str, float]]] = {
            (name, path, c): [] for name in names for path in PATHS for c in concurrencies
        }
        try:
            for round_no in range(args.rounds):
                # Alternate which tree goes first, so neither always follows the other.
                order = names if round_no % 2 == 0 else names[::-1]
                for path in PATHS:
                    for concurrency in concurrencies:
                        for name in order:
                            result = one_run(
                                trees[name], path, concurrency, url, server.pid, args.decisions
                            )
                            runs[(name, path, concurrency)].append(result)
        finally:
            server.terminate()
            server.wait()
    print(
        f"{args.decisions} decisions a run, {SUBJECTS} projects, {args.rounds} rounds, "
        f"hiredis={'yes' if _has_hiredis() else 'no'}"
    )
    report(runs, names, args.baseline or "")


def _has_hiredis() -> bool:
    try:
        import hiredis  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--concurrency", default="16,500", help="callers at a time, comma list")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REF", help="also run this commit's tree")
    # One run in a child process (the parent starts these).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--redis-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.concurrency = int(args.concurrency)
        # The gateway's workers run on uvloop.
        print(json.dumps(uvloop.run(child(args))))
    else:
        parent(args)


if __name__ == "__main__":
    main()
