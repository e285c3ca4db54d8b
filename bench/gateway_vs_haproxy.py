"""What a request costs through the gateway, next to C proxies on the same cores.

One run, alternating rounds, against the same nginx upstream (204 to DELETE,
a small image document to GET):

- ``nginx``: nginx as a plain keep-alive reverse proxy, no policy at all;
- ``haproxy``: HAProxy 2.6 with the equivalent policy, ``nbthread`` as many
  as the gateway's workers: RS256 ``jwt_verify`` on every request, algorithm
  pinned, expiry, role, a per-project stick-table rate, identity headers
  (client ones stripped), Via and a request id;
- ``aiohttp``: a bare aiohttp pass-through (bench/aiohttp_passthrough.py),
  the floor for anything built on aiohttp;
- ``lean``: aiohttp's server forwarding through the gateway's own upstream
  client, no policy (bench/lean_passthrough.py): the floor for the gateway
  as built;
- ``gw-backend`` and ``gw-gateway``: the gateway as shipped
  (config/gateway.yaml: Redis limiter and revocations, JSON logs, audit),
  with ``owner_check: backend`` and ``gateway``. Only what must change to
  run here is changed: addresses, the trusted key (the bench's RS256 key in
  place of the example issuer and its JWKS), the rate-limit rule's value
  (raised so that nothing is refused) and log and audit files;
- with ``--baseline REF`` (a git commit, branch or tag of this repository),
  ``gw-backend@REF`` too: the same, from that commit's tree, so that a change
  is measured before and after in the same run, rounds alternating;
- with ``--mypyc``, ``gw-backend+mypyc`` too: HEAD's tree with the request
  path compiled by mypyc (bench/compiled_tree.py), an experiment the
  gateway does not ship.

wrk -t1 sends DELETE /v2/images/<random uuid> with one of 1000 RS256 tokens
(one project, 1000 users, role cloudImages:admin: not a global admin, so
``gw-gateway`` looks the owner up every time). For each round it prints
req/s, p50 and p99, and the CPU time of the proxy's whole process tree
(the parent included, from /proc) per request and the kernel's part of it;
Redis's CPU per request is shown beside the gateway's. Then the ratios, and
each gateway worker's RSS at the start and end of the measured rounds.

Needs Debian's nginx-light (or nginx), haproxy, wrk and redis-server:

    apt-get install -y nginx-light haproxy wrk redis-server
    python -m bench.gateway_vs_haproxy [--seconds 5] [--rounds 2] [--workers 2]
        [--baseline main] [--mypyc] [--targets haproxy,gw-backend] [--soak 500000]

``--soak N`` keeps each gateway busy after the rounds until it has served N
requests, so that the memory line covers that many; its first RSS is then
taken once a gateway has served ``--soak-from`` requests (50,000) after its
warm-up, so the line reads as the growth from there to N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from bench.compiled_tree import compile_tree
from bench.harness import REPO
from bench.harness.cpu import process_role, process_tree, rss_mb
from bench.harness.gateway import TOKENS, gateway_conf, make_tokens, token_cache, warm_gateway
from bench.harness.processes import checkout, free_port, started
from bench.harness.services import backing_services
from bench.harness.wrk import WRK_SCRIPT, Round, measure, run_wrk

MYPYC = "gw-backend+mypyc"


# --- configurations -------------------------------------------------------------------------


def nginx_proxy_conf(tmp: Path, port: int, upstream: int, workers: int) -> Path:
    path = tmp / "proxy.conf"
    path.write_text(
        f"""daemon off;
worker_processes {workers};
pid {tmp}/proxy.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream up {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    )
    return path


def haproxy_conf(tmp: Path, port: int, upstream: int, threads: int, public_pem: Path) -> Path:
    uuid_re = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    path = tmp / "haproxy.cfg"
    path.write_text(
        f"""global
  nbthread {threads}
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{port}
  unique-id-format req-%[uuid(4)]
  acl uuid_path path -m reg ^/(v2/)?images/{uuid_re}$
  http-request deny deny_status 405 unless METH_DELETE
  http-request deny deny_status 400 unless uuid_path
  http-request set-var(txn.token) req.hdr(X-Auth-Token)
  http-request deny deny_status 401 unless {{ var(txn.token) -m found }}
  http-request set-var(txn.alg) var(txn.token),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless {{ var(txn.alg) -m str RS256 }}
  acl signed var(txn.token),jwt_verify("RS256","{public_pem}") -m int 1
  http-request deny deny_status 401 unless signed
  http-request set-var(txn.now) date
  http-request set-var(txn.exp) var(txn.token),jwt_payload_query('$.exp','int')
  http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int le 0 }}
  http-request set-var(txn.project) var(txn.token),jwt_payload_query('$.project_id')
  http-request set-var(txn.role) var(txn.token),jwt_payload_query('$.roles[0]')
  http-request deny deny_status 403 unless {{ var(txn.role) -m str admin cloudImages:admin }}
  http-request track-sc0 var(txn.project) table rl
  http-request deny deny_status 413 if {{ sc_http_req_rate(0) gt 1000000000 }}
  http-request del-header ^X-(Identity|Project|Tenant|User|Roles?|Service|Domain|Auth) -m reg
  http-request set-header X-Identity-Status Confirmed
  http-request set-header X-Project-Id %[var(txn.project)]
  http-request set-header X-Tenant-Id %[var(txn.project)]
  http-request set-header X-OpenStack-Request-Id %[unique-id]
  http-request add-header Via "1.1 haproxy"
  http-response set-header X-Compute-Request-Id %[unique-id]
  default_backend be
backend rl
  stick-table type string len 64 size 100k expire 60s store http_req_rate(60s)
backend be
  http-reuse always
  server up 127.0.0.1:{upstream}
"""
    )
    return path


# --- measuring ------------------------------------------------------------------------------


def serve_until(url: str, script: Path, args: argparse.Namespace, count: int) -> int:
    """Requests sent, in runs of a few seconds, until ``count`` were served; how many."""
    served = 0
    while served < count:
        served += int(run_wrk(url, script, 5, args.connections)["requests"])
    return served


def soak(url: str, script: Path, args: argparse.Namespace, rounds: list[Round], before: int) -> int:
    """Requests sent after the measured rounds until ``args.soak`` were served
    in all (``before`` them too); how many that was."""
    served = before + sum(r.requests for r in rounds)
    extra = 0
    while served + extra < args.soak:
        extra += int(run_wrk(url, script, 30, args.connections)["requests"])
    return extra


def check_policy(url: str, token: str) -> None:
    """A proxy enforcing the policy must pass a good token and refuse a bad one."""

    def status(headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, method="DELETE", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status({"X-Auth-Token": token}) == 204, url
    assert status({}) == 401, url
    assert status({"X-Auth-Token": token[:-4] + "AAAA"}) == 401, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per round and target")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gateway processes = threads")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="N",
        help="then keep each gateway busy until it has served N requests, for the memory line",
    )
    parser.add_argument(
        "--soak-from",
        type=int,
        default=50_000,
        metavar="M",
        help="with --soak: the first RSS once M requests were served after the warm-up",
    )
    parser.add_argument(
        "--baseline", metavar="REF", help="also run gw-backend from this commit, side by side"
    )
    parser.add_argument(
        "--mypyc",
        action="store_true",
        help=f"also run {MYPYC}: HEAD's tree, the request path compiled (bench/compiled_tree.py)",
    )
    parser.add_argument(
        "--targets",
        default="nginx,haproxy,aiohttp,lean,gw-backend,gw-gateway",
        help="which to measure, comma-separated (haproxy always: the ratios are to it)",
    )
    args = parser.parse_args()
    missing = [b for b in ("nginx", "haproxy", "wrk", "redis-server") if not shutil.which(b)]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install nginx-light haproxy wrk)")
        return 2

    # The machine's load before this run adds its own, and after.
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmpdir:
        tmp = Path(tmpdir)
        public_pem, token_file = make_tokens(tmp)
        token = token_file.read_text().splitlines()[0]
        script = tmp / "delete.lua"
        script.write_text(WRK_SCRIPT % token_file)
        targets = ["haproxy", *(t for t in args.targets.split(",") if t and t != "haproxy")]
        trees = {}
        if args.baseline:
            trees[f"gw-backend@{args.baseline}"] = checkout(args.baseline, tmp)
            targets.append(f"gw-backend@{args.baseline}")
        if args.mypyc:
            trees[MYPYC] = checkout("HEAD", tmp, "mypyc")
            compile_tree(trees[MYPYC])
            targets.append(MYPYC)
        gateways = [t for t in targets if t.startswith("gw-")]
        ports = {name: free_port() for name in ("upstream", "redis", *targets)}
        redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
        up = ports["upstream"]
        w = args.workers
        # fmt: off
        # One target a row, each flag beside its value.
        known = {
            **backing_services(tmp, up, ports["redis"]),
            "nginx": (["nginx", "-p", str(tmp), "-e", "stderr",
                       "-c", str(nginx_proxy_conf(tmp, ports.get("nginx", 0), up, w))],
                      ports.get("nginx", 0)),
            "haproxy": (["haproxy", "-f",
                         str(haproxy_conf(tmp, ports["haproxy"], up, w, public_pem))],
                        ports["haproxy"]),
            "aiohttp": ([sys.executable, "-m", "bench.aiohttp_passthrough",
                         str(ports.get("aiohttp", 0)), f"http://127.0.0.1:{up}", str(w)],
                        ports.get("aiohttp", 0)),
            "lean": ([sys.executable, "-m", "bench.lean_passthrough",
                      str(ports.get("lean", 0)), f"http://127.0.0.1:{up}", str(w)],
                     ports.get("lean", 0)),
        }
        # fmt: on
        commands = {n: c for n, c in known.items() if n in ("upstream", "redis", *targets)}
        admin_ports = {name: free_port() for name in gateways}
        for name in gateways:
            conf = gateway_conf(
                tmp,
                name,
                ports[name],
                up,
                w,
                redis_url,
                public_pem,
                admin_ports[name],
                trees.get(name, REPO),
                owner_check="backend" if name == MYPYC else None,
            )
            command = [sys.executable, "-m", "gateway", "run", "--config", str(conf)]
            commands[name] = (command, ports[name])
        results: dict[str, list[Round]] = {name: [] for name in targets}
        with started(commands, tmp, trees) as pids:
            urls = {n: f"http://127.0.0.1:{ports[n]}/v2/images/{uuid.uuid4()}" for n in targets}
            for name in ("haproxy", *gateways):
                check_policy(urls[name], token)
            for name in targets:
                run_wrk(urls[name], script, 2, args.connections)
            for name, admin_port in admin_ports.items():
                warm_gateway(urls[name], admin_port, script, args.connections)
            workers = {n: process_tree(pids[n]) for n in admin_ports}
            roles = {p: process_role(p, root=pids[n]) for n in workers for p in workers[n]}
            before = {
                n: serve_until(urls[n], script, args, args.soak_from) if args.soak else 0
                for n in workers
            }
            rss_start = {n: {p: rss_mb(p) for p in workers[n]} for n in workers}
            cache_start = {n: token_cache(port) for n, port in admin_ports.items()}
            for _ in range(args.rounds):
                for name in targets:
                    results[name].append(
                        measure(
                            urls[name],
                            pids[name],
                            pids["redis"],
                            script,
                            args.seconds,
                            args.connections,
                        )
                    )
            soaked = {n: soak(urls[n], script, args, results[n], before[n]) for n in workers}
            rss_end = {n: {p: rss_mb(p) for p in workers[n]} for n in workers}
            hit_rates = {}
            for name, port in admin_ports.items():
                (hits, misses), (hits0, misses0) = token_cache(port), cache_start[name]
                hit_rates[name] = (hits - hits0) / max(hits - hits0 + misses - misses0, 1)
        load.append(os.getloadavg()[0])
        report(args, results, rss_start, rss_end, roles, hit_rates, before, soaked, load)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[str, list[Round]],
    rss_start: dict[str, dict[int, float]],
    rss_end: dict[str, dict[int, float]],
    roles: dict[int, str],
    hit_rates: dict[str, float],
    before: dict[str, int],
    soaked: dict[str, int],
    load: list[float],
) -> None:
    print(
        f"DELETE /v2/images/<uuid>, {TOKENS} RS256 tokens, wrk -t1 -c{args.connections}, "
        f"{args.rounds} alternating rounds x {args.seconds}s, {args.workers} workers/threads, "
        f"cores: {os.cpu_count()}, load average (1 min) as the run started: {load[0]:.1f}, "
        f"as it ended: {load[1]:.1f}"
    )
    print(
        f"{'':20}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'CPU-us/req':>12}"
        f"{'of it sys':>11}{'redis us':>10}"
    )
    for name, rounds in results.items():
        for r in rounds:
            redis = f"{r.redis_cpu_us:10.0f}" if name.startswith("gw-") else f"{'':10}"
            print(
                f"{name:<20}{r.rps:9.0f}{r.p50_ms:9.2f}{r.p99_ms:9.2f}{r.non_2xx:9d}"
                f"{r.cpu_us:12.0f}{r.system_us:11.0f}{redis}"
            )
    rps = {n: statistics.median(r.rps for r in rounds) for n, rounds in results.items()}
    cpu = {n: statistics.median(r.cpu_us for r in rounds) for n, rounds in results.items()}
    print("medians, as ratios to haproxy:")
    for name in results:
        times = cpu[name] / cpu["haproxy"]
        print(
            f"  {name:<20} {rps[name] / rps['haproxy']:5.2f}x req/s, "
            f"{cpu[name]:5.0f} CPU-us/req ({times:4.1f}x haproxy's)"
        )
    for name, start in rss_start.items():
        served = before[name] + sum(r.requests for r in results[name]) + soaked[name]
        lines = ", ".join(
            f"{roles[p]} {start[p]:.1f}->{rss_end[name][p]:.1f} MB"
            f" ({(rss_end[name][p] / start[p] - 1):+.1%})"
            for p in start
        )
        span = f"from {before[name]} to {served}" if before[name] else f"over {served}"
        print(f"memory {name}: RSS per process {span} requests after warm-up: {lines}")
    for name, rate in hit_rates.items():
        print(f"token cache {name}: {rate:.1%} of measured look-ups hit (the rest verified RS256)")


if __name__ == "__main__":
    raise SystemExit(main())
