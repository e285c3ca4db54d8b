"""Instructions per request, counted by callgrind: a figure the machine's noise does not move.

CPU time per request, on a shared 2-core machine, moves by a fifth between
rounds of one run; the number of instructions a process executes for the same
requests moves by well under 1% (valgrind counts them, whatever else the
machine is doing). This bench runs, one process each under
``valgrind --tool=callgrind`` and each with one worker:

- ``floor``: aiohttp's server forwarding through the gateway's own lean
  client (bench/lean_passthrough.py), no policy;
- ``gw-backend``: the gateway as shipped (bench/gateway_vs_haproxy.py's
  configuration: Redis limiter and revocations, JSON access log, audit file,
  ``owner_check: backend``);
- ``gw-memory``: the same with the in-process limiter, so that the Redis
  limiter's share is the difference;
- with ``--baseline REF``, ``gw-backend@REF`` and ``gw-memory@REF``: the same
  from that commit's tree;
- with ``--tracing``, ``gw-backend+tracing``: ``gw-backend`` tracing every
  request (sample ratio 1.0: the server span, the limiter's and the backend
  call's), exported to the nginx upstream, which answers the OTLP POSTs 204.
  The export thread's instructions are counted too.

Each is warmed up (imports, caches, every token verified once), then
counted over ``--seconds`` of ``wrk -c1`` (one request at a time, so that no
batching differs between runs) sending the same DELETEs as
bench/gateway_vs_haproxy.py with one of 50 RS256 tokens. Before that it is
counted idle for ``--idle`` seconds, and what it executes idle in as long as
the wrk run (its timers: refreshes, reports, probes) is taken out: under
callgrind a process answers only a few dozen requests a second, and a slower
target would otherwise be charged more of its own clock's work per request.
It prints thousands of instructions per request and the ratios. Instructions are not time: a
system call counts a few, a cache miss none; bench/gateway_vs_haproxy.py
measures time.

    apt-get install -y valgrind nginx-light wrk redis-server
    python -m bench.gateway_instructions [--seconds 20] [--baseline main] [--tracing]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

from bench.harness import REPO
from bench.harness.gateway import gateway_conf, make_tokens
from bench.harness.processes import checkout, free_port, started
from bench.harness.services import backing_services
from bench.harness.wrk import WRK_SCRIPT, run_wrk

TOKENS = 50
# Python under callgrind runs some fifty times slower.
STARTUP_DEADLINE = 180.0
DUMP_DEADLINE = 120.0
# Seconds left between the warm-up and the idle count.
IDLE_SETTLE = 2.0


def counted(out: Path, part: int) -> int:
    """The instructions in callgrind's ``part``-th dump of ``out``, once it is complete."""
    dump = out.parent / f"{out.name}.{part}"
    end = time.monotonic() + DUMP_DEADLINE
    while time.monotonic() < end:
        if dump.exists():
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")) and int(line.split()[1]):
                    return int(line.split()[1])
        time.sleep(0.5)
    raise SystemExit(f"callgrind wrote no dump {dump} in {DUMP_DEADLINE}s")


def valgrind(out: Path) -> list[str]:
    """The command prefix that runs Python under callgrind, counting nothing yet."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
    ]


def count_requests(
    name: str, url: str, pid: int, out: Path, script: Path, args: argparse.Namespace
) -> float:
    """Warm ``pid`` up, then its instructions per request over ``args.seconds``
    of wrk; prints the line.

    Under callgrind a process answers a few dozen requests a second, so what
    it does on its own clock (timers: refreshes, reports, probes) would be
    charged to those few requests, more to a slower target. So it is first
    counted idle, and what it executes idle in as long is taken out."""
    run_wrk(url, script, args.warmup, args.connections)
    control = ["callgrind_control", str(pid)]

    def count(during: Callable[[], object]) -> tuple[float, object]:
        subprocess.run([*control, "--instr=on"], check=True, capture_output=True)
        start = time.monotonic()
        outcome = during()
        elapsed = time.monotonic() - start
        subprocess.run([*control, "--instr=off"], check=True, capture_output=True)
        subprocess.run([*control, "--dump"], check=True, capture_output=True)
        return elapsed, outcome

    # The warm-up's own aftermath (its records' flush, a batch of the feed)
    # is not what the process does idle.
    time.sleep(IDLE_SETTLE)
    idle_seconds, _ = count(lambda: time.sleep(args.idle))
    busy_seconds, outcome = count(lambda: run_wrk(url, script, args.seconds, args.connections))
    result = cast(dict[str, float], outcome)
    idle_rate = counted(out, 1) / idle_seconds
    requests = max(int(result["requests"]), 1)
    per_request = (counted(out, 2) - idle_rate * busy_seconds) / requests
    thousands, refused = per_request / 1000, int(result["non_2xx"])
    print(
        f"{name:<24}{requests:7d} requests {thousands:9.1f} "
        f"k instructions/request  non-2xx {refused}  (idle: {idle_rate / 1000:.0f} k/s taken out)",
        flush=True,
    )
    return per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="counted, per target")
    parser.add_argument("--warmup", type=int, default=15, help="seconds, per target")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--idle", type=int, default=5, help="seconds counted idle, per target")
    parser.add_argument("--baseline", metavar="REF", help="also count this commit's gateway")
    parser.add_argument("--tracing", action="store_true", help="also count HEAD tracing all")
    args = parser.parse_args()
    missing = [
        b
        for b in ("valgrind", "callgrind_control", "nginx", "wrk", "redis-server")
        if not shutil.which(b)
    ]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install valgrind nginx-light wrk)")
        return 2
    with tempfile.TemporaryDirectory(prefix="gateway-instructions-") as tmpdir:
        tmp = Path(tmpdir)
        public_pem, token_file = make_tokens(tmp, TOKENS)
        script = tmp / "delete.lua"
        script.write_text(WRK_SCRIPT % token_file)
        trees = {"": REPO}
        if args.baseline:
            trees[f"@{args.baseline}"] = checkout(args.baseline, tmp)
        up, redis = free_port(), free_port()
        redis_url = f"redis://127.0.0.1:{redis}/0"
        commands = backing_services(tmp, up, redis)
        ports, outs, where = {}, {}, {}
        targets = ["floor"] + [
            f"gw-{kind}{suffix}" for suffix in trees for kind in ("backend", "memory")
        ]
        if args.tracing:
            targets.append("gw-backend+tracing")
        for name in targets:
            port = ports[name] = free_port()
            out = outs[name] = tmp / f"callgrind-{port}.out"
            if name == "floor":
                commands[name] = (
                    [
                        *valgrind(out),
                        "-m",
                        "bench.lean_passthrough",
                        str(port),
                        f"http://127.0.0.1:{up}",
                    ],
                    port,
                )
                continue
            suffix = name.partition("@")[1] + name.partition("@")[2]
            tree = where[name] = trees[suffix]
            tracing = f"http://127.0.0.1:{up}/v1/traces" if name.endswith("+tracing") else None
            conf = gateway_conf(
                tmp,
                f"gw-{port}",
                port,
                up,
                1,
                redis_url,
                public_pem,
                free_port(),
                tree,
                owner_check="backend",
                memory_limiter=name.startswith("gw-memory"),
                tracing=tracing,
            )
            commands[name] = ([*valgrind(out), "-m", "gateway", "run", "--config", str(conf)], port)
        per_request: dict[str, float] = {}
        with started(commands, tmp, where, STARTUP_DEADLINE) as pids:
            for name in targets:
                url = f"http://127.0.0.1:{ports[name]}/v2/images/{uuid.uuid4()}"
                per_request[name] = count_requests(name, url, pids[name], outs[name], script, args)
    floor = per_request["floor"]
    print("ratios:")
    for name, count in per_request.items():
        line = f"  {name:<22} {count / floor:5.2f}x the floor"
        if name == "gw-backend+tracing":
            line += f", tracing {(count - per_request['gw-backend']) / 1000:+.1f} k over gw-backend"
        elif name.startswith("gw-backend"):
            memory = per_request[name.replace("gw-backend", "gw-memory")]
            line += f", Redis limiter {(count - memory) / 1000:+.1f} k over the in-process one"
        base = f"{name.partition('@')[0]}@{args.baseline}"
        if args.baseline and "@" not in name and base in per_request:
            line += f", {count / per_request[base]:5.3f}x {base}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
