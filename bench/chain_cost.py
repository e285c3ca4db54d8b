"""What the chain's steps cost: the gateway with steps taken out, side by side.

Each rung is one tree (``--ref``, HEAD by default) with the steps of the rungs
above it taken out of the chain (gateway/app.py, edited in a copy), and runs
the configuration bench/gateway_vs_haproxy.py gives the shipped gateway
(Redis limiter and revocations, JSON access log, audit file):

- ``traced``: ``shipped`` with tracing on at sample ratio 1.0 (the server
  span, the limiter's and the backend call's), exported over OTLP/HTTP to
  the nginx upstream, which answers 204: what tracing every request costs,
  the export thread included (compared with ``shipped``; tracing is off as
  shipped and has no budget);
- ``owner-lookup``: all of it, with ``owner_check: gateway`` (every request
  a new image, so every look-up a cache miss);
- ``shipped``: all of it, ``owner_check: backend``, as shipped, tracing off;
- ``no-observability``: no observability step (no request record, access
  or audit line, dashboard feed or request counters);
- ``no-authorization``: and no authorization step;
- ``no-rate-limit``: and no rate-limit step;
- ``no-auth``: and no authentication, so no identity headers either; left are
  the request id, the fault envelope, Via, the header boundary, routing and
  the proxy;
- ``floor``: aiohttp's server forwarding through the gateway's own client,
  no chain (bench/lean_passthrough.py).

The difference between two rungs is what the step taken out costs, the steps
of the cheaper rung staying in, and it prints each beside that step's budget
(the chain's budget per step, in CPU-µs per request on the shipped
configuration). The last row is the rest of the chain over the floor, the
proxy's own work over the floor's forwarding included. The rungs below
``shipped`` are not configurations the gateway offers.

By default it counts instructions per request under callgrind, one worker
each at ``wrk -c1`` (bench/gateway_instructions.py: a figure the machine's
noise does not move; the budgets are in CPU-µs, so it shows them without a
verdict). ``--clock`` measures CPU-µs per request of each process tree
instead, ``--workers`` workers at ``wrk -c32``, rounds alternating
(bench/gateway_vs_haproxy.py's method): the figure the budgets are set in,
batching included, noise too.

    apt-get install -y valgrind nginx-light wrk redis-server
    python -m bench.chain_cost [--seconds 10] [--warmup 8] [--ref main]
    python -m bench.chain_cost --clock [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from bench import gateway_instructions
from bench.gateway_instructions import count_requests, valgrind
from bench.harness import gateway
from bench.harness.gateway import gateway_conf, make_tokens, warm_gateway
from bench.harness.processes import checkout, free_port, started
from bench.harness.services import backing_services
from bench.harness.wrk import WRK_SCRIPT, Round, measure, run_wrk


class Rung(NamedTuple):
    name: str
    # Middleware classes taken out of the chain, besides those of the rungs above.
    without: tuple[str, ...]
    # The step this rung has over the one below it (or over ``over``), and
    # that step's budget in CPU-µs per request (None: not budgeted).
    step: str
    budget: int | None
    owner_check: str = "backend"
    tracing: bool = False
    over: str | None = None


RUNGS = (
    Rung(
        "traced",
        (),
        "tracing every request (sample ratio 1.0; off as shipped)",
        None,
        tracing=True,
        over="shipped",
    ),
    Rung(
        "owner-lookup",
        (),
        "owner look-up (owner_check: gateway), cache miss",
        40,
        owner_check="gateway",
    ),
    Rung("shipped", (), "observability (access line, audit record, metrics, dashboard feed)", 15),
    Rung(
        "no-observability",
        ("ObservabilityMiddleware",),
        "authorization (roles; owner check in the backend)",
        5,
    ),
    Rung("no-authorization", ("AuthorizationMiddleware",), "rate limit (Redis, shipped rules)", 15),
    Rung(
        "no-rate-limit",
        ("RateLimitMiddleware",),
        "authentication, cache hit, revocation check included",
        10,
    ),
    Rung(
        "no-auth",
        ("AuthenticationMiddleware",),
        "request id, fault envelope, Via, header boundary, routing (and the proxy over the "
        "floor's)",
        15,
    ),
)
SHIPPED = "shipped"
FLOOR = "floor"
# The bars for the gateway whole, in CPU-µs per request: rung, what, bar.
WHOLE = (
    (SHIPPED, "the gateway as shipped", 170),
    ("owner-lookup", "the gateway, owner_check: gateway", 220),
)


def take_out(tree: Path, steps: Sequence[str]) -> None:
    """Take ``steps`` (middleware classes) out of the chain in ``tree``'s gateway/app.py."""
    app = tree / "gateway" / "app.py"
    source = app.read_text()
    for step in steps:
        # One entry of the middlewares list, its arguments nested one deep at most.
        entry = re.compile(rf"\n\s+{step}\((?:[^()]|\([^()]*\))*\),")
        source, found = entry.subn("", source)
        if found != 1:
            raise SystemExit(f"{step} is in the chain of {app} {found} times, not once")
    app.write_text(source)


def rung_trees(tmp: Path, ref: str) -> dict[str, Path]:
    """Each rung's tree: ``ref``'s, then each copy with more steps taken out."""
    trees: dict[str, Path] = {}
    whole = previous = checkout(ref, tmp, "tree-whole")
    taken: list[str] = []
    for rung in RUNGS:
        if rung.without:
            taken += rung.without
            previous = tmp / f"tree-{rung.name}"
            shutil.copytree(whole, previous)
            take_out(previous, taken)
        trees[rung.name] = previous
    return trees


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clock", action="store_true", help="CPU-us under load, not instructions")
    parser.add_argument("--seconds", type=int, default=10, help="measured, per rung and round")
    parser.add_argument("--warmup", type=int, default=8, help="seconds (instructions only)")
    parser.add_argument("--idle", type=int, default=5, help="seconds counted idle (instructions)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating (--clock only)")
    parser.add_argument("--workers", type=int, default=2, help="per gateway (--clock only)")
    parser.add_argument("--connections", type=int, help="wrk's: 1, or 32 with --clock")
    parser.add_argument("--ref", default="HEAD", help="the commit whose tree is measured")
    args = parser.parse_args()
    args.connections = args.connections or (32 if args.clock else 1)
    needed = ("nginx", "wrk", "redis-server", *(() if args.clock else ("valgrind",)))
    missing = [b for b in needed if not shutil.which(b)]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install nginx-light wrk valgrind)")
        return 2
    with tempfile.TemporaryDirectory(prefix="gateway-chain-cost-") as tmpdir:
        tmp = Path(tmpdir)
        # Each bench's own token count: 50 under callgrind, whose warm-up
        # verifies each; 1000 under load, as gateway_vs_haproxy sends.
        tokens = gateway.TOKENS if args.clock else gateway_instructions.TOKENS
        public_pem, token_file = make_tokens(tmp, tokens)
        script = tmp / "delete.lua"
        script.write_text(WRK_SCRIPT % token_file)
        trees = rung_trees(tmp, args.ref)
        up, redis = free_port(), free_port()
        redis_url = f"redis://127.0.0.1:{redis}/0"
        workers = args.workers if args.clock else 1
        commands = backing_services(tmp, up, redis)
        ports = {name: free_port() for name in (FLOOR, *trees)}
        admin_ports, outs = {}, {}
        for name, port in ports.items():
            outs[name] = tmp / f"callgrind-{name}.out"
            prefix = [sys.executable] if args.clock else valgrind(outs[name])
            if name == FLOOR:
                floor = ["-m", "bench.lean_passthrough", str(port), f"http://127.0.0.1:{up}"]
                commands[name] = ([*prefix, *floor, str(workers)], port)
                continue
            admin_ports[name] = free_port()
            rung = next(r for r in RUNGS if r.name == name)
            tracing = f"http://127.0.0.1:{up}/v1/traces" if rung.tracing else None
            conf = gateway_conf(
                tmp,
                f"gw-{name}",
                port,
                up,
                workers,
                redis_url,
                public_pem,
                admin_ports[name],
                trees[name],
                owner_check=rung.owner_check,
                tracing=tracing,
            )
            commands[name] = ([*prefix, "-m", "gateway", "run", "--config", str(conf)], port)
        names = [*trees, FLOOR]
        urls = {n: f"http://127.0.0.1:{ports[n]}/v2/images/{uuid.uuid4()}" for n in names}
        # Startup under callgrind is some fifty times slower.
        deadline = 20.0 if args.clock else gateway_instructions.STARTUP_DEADLINE
        with started(commands, tmp, trees, deadline) as pids:
            if args.clock:
                per_request = clock(args, names, urls, pids, admin_ports, script)
            else:
                per_request = {
                    n: count_requests(n, urls[n], pids[n], outs[n], script, args) / 1000
                    for n in names
                }
    print_budgets(per_request, args.clock, args.ref)
    return 0


def print_budgets(per_request: dict[str, float], clock: bool, ref: str) -> None:
    """Each rung's figure, then each step's cost (its rung over the one below)
    beside its budget, as a Markdown table."""
    unit = "CPU-µs" if clock else "k instructions"

    def verdict(cost: float, budget: int) -> str:
        # Instructions are not the budget's unit: no verdict on them.
        return "" if not clock else " (within)" if cost <= budget else " (**over**)"

    names = [*(rung.name for rung in RUNGS), FLOOR]
    print(f"{unit} per request, {ref}:")
    for name in names:
        print(f"  {name:<18} {per_request[name]:8.1f}")
    print()
    print(f"| step | {unit}/request | budget, CPU-µs/request |")
    print("|---|---|---|")
    for rung, below in zip(RUNGS, names[1:], strict=True):
        cost = per_request[rung.name] - per_request[rung.over or below]
        if rung.budget is None:
            print(f"| {rung.step}, over {rung.over or below} | {cost:.1f} | none |")
            continue
        print(f"| {rung.step} | {cost:.1f}{verdict(cost, rung.budget)} | ≤ {rung.budget} |")
    chain = per_request[SHIPPED] - per_request[FLOOR]
    budget = sum(
        rung.budget
        for rung in RUNGS
        if rung.budget is not None and rung.owner_check == "backend" and not rung.tracing
    )
    print(f"| the chain as shipped, over the floor | {chain:.1f} | ≤ {budget} (the steps' sum) |")
    print(f"| floor: aiohttp's server and the gateway's client | {per_request[FLOOR]:.1f} | |")
    for name, what, bar in WHOLE:
        cost = per_request[name]
        print(f"| {what}, whole | {cost:.1f}{verdict(cost, bar)} | ≤ {bar} (the bar) |")


def clock(
    args: argparse.Namespace,
    names: list[str],
    urls: dict[str, str],
    pids: dict[str, int],
    admin_ports: dict[str, int],
    script: Path,
) -> dict[str, float]:
    """Medians of CPU-µs per request over alternating rounds; prints each round."""
    for name in names:
        if name in admin_ports:
            warm_gateway(urls[name], admin_ports[name], script, args.connections)
        else:
            run_wrk(urls[name], script, 3, args.connections)
    rounds: dict[str, list[Round]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            r = measure(
                urls[name], pids[name], pids["redis"], script, args.seconds, args.connections
            )
            rounds[name].append(r)
            print(
                f"{name:<18}{r.rps:9.0f} req/s {r.cpu_us:7.0f} CPU-us/req "
                f"({r.system_us:.0f} of it sys)  non-2xx {r.non_2xx}",
                flush=True,
            )
    return {name: statistics.median(r.cpu_us for r in rs) for name, rs in rounds.items()}


if __name__ == "__main__":
    raise SystemExit(main())
