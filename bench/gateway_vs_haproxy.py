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
requests, so that the memory line covers that many.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.compiled_tree import compile_tree
from gateway.config import MAX_LIMIT

REPO = Path(__file__).resolve().parent.parent
ISSUER = "https://bench.identity.test"
AUDIENCE = "image-api"
PROJECT = "bench"
TOKENS = 1000
MYPYC = "gw-backend+mypyc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {deadline}s")


# --- configurations -------------------------------------------------------------------------


def nginx_upstream_conf(tmp: Path, port: int) -> Path:
    document = f'{{"id": "x", "owner": "{PROJECT}", "visibility": "private"}}'
    path = tmp / "upstream.conf"
    path.write_text(
        f"""daemon off;
worker_processes 1;
pid {tmp}/upstream.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      if ($request_method = GET) {{ return 200 '{document}'; }}
      return 204;
    }}
  }}
}}
"""
    )
    return path


def backing_services(tmp: Path, upstream: int, redis: int) -> dict[str, tuple[list[str], int]]:
    """The commands of what every proxy here stands in front of: the nginx
    upstream (``upstream``) and Redis (``redis``), by port."""
    return {
        "upstream": (["nginx", "-p", str(tmp), "-e", "stderr",
                      "-c", str(nginx_upstream_conf(tmp, upstream))], upstream),
        "redis": (["redis-server", "--port", str(redis), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"], redis),
    }  # fmt: skip


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


def gateway_conf(
    tmp: Path,
    name: str,
    port: int,
    upstream: int,
    workers: int,
    redis_url: str,
    public_pem: Path,
    admin_port: int,
    tree: Path = REPO,
    owner_check: str | None = None,
    memory_limiter: bool = False,
) -> Path:
    """``tree``'s config/gateway.yaml, changed only where it must be to run here;
    ``owner_check`` by default from ``name`` (``gw-backend``, ``gw-gateway@REF``);
    ``memory_limiter``: the in-process limiter in place of Redis."""
    data: dict[str, Any] = yaml.safe_load((tree / "config" / "gateway.yaml").read_text())
    data["listen"].update(host="127.0.0.1", port=port, workers=workers)
    data["upstream"]["url"] = f"http://127.0.0.1:{upstream}"
    issuer = data["auth"]["issuers"][0]
    issuer.update(issuer=ISSUER, audience=AUDIENCE)
    issuer["keys"] = [{"kid": "bench", "algorithm": "RS256", "public_key_file": str(public_pem)}]
    issuer.pop("jwks")
    data["authorization"]["policy_file"] = str(tree / "config" / "policy.yaml")
    data["authorization"]["owner_check"] = owner_check or name.removeprefix("gw-").split("@")[0]
    data["revocation"]["redis"]["url"] = redis_url
    data["rate_limit"]["redis"]["url"] = redis_url
    if memory_limiter:
        data["rate_limit"]["store"] = "memory"
        data["rate_limit"].pop("redis")
    # Every request is counted, none refused: a run makes far fewer than this.
    for rule in data["rate_limit"]["rules"]:
        rule["value"] = MAX_LIMIT
    data["admin"]["port"] = admin_port
    data["audit"]["sink"] = str(tmp / f"{name}-audit.jsonl")
    path = tmp / f"{name.replace('@', '-at-')}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def make_tokens(tmp: Path, count: int = TOKENS) -> tuple[Path, Path]:
    """An RS256 key's public half, and a file of ``count`` tokens it signed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp / "bench-public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "project_id": PROJECT,
              "roles": ["cloudImages:admin"], "iat": now, "exp": now + 3600}  # fmt: skip
    tokens = [
        jwt.encode({**claims, "sub": f"user-{i}"}, key, algorithm="RS256", headers={"kid": "bench"})
        for i in range(count)
    ]
    token_file = tmp / "tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    return public, token_file


WRK_SCRIPT = """
local tokens = {}
for line in io.lines("%s") do tokens[#tokens + 1] = line end
local r = math.random
-- init runs in the thread's own Lua state, where the requests are made.
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
local function uuid4()
  return string.format("%%04x%%04x-%%04x-4%%03x-a%%03x-%%04x%%04x%%04x",
    r(0, 65535), r(0, 65535), r(0, 65535), r(0, 4095), r(0, 4095),
    r(0, 65535), r(0, 65535), r(0, 65535))
end
request = function()
  return wrk.format("DELETE", "/v2/images/" .. uuid4(),
    {["X-Auth-Token"] = tokens[r(#tokens)]})
end
"""


# --- measuring ------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU time of ``pids`` together: (user, system) seconds."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime
        system += int(fields[12])  # stime
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def process_role(pid: int, root: int) -> str:
    """What a process of the gateway's tree is, for the memory line."""
    if pid == root:
        return "parent"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    return "resource tracker" if b"resource_tracker" in cmdline else "worker"


def rss_mb(pid: int) -> float:
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * PAGE / 1e6


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    cpu_us: float
    # Of cpu_us, the kernel's (system calls, the loopback network); the
    # rest is the proxy's own code.
    system_us: float
    redis_cpu_us: float


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out)
        if match is None:
            raise SystemExit(f"wrk printed no {pattern!r}:\n{out}")
        return match

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        "p50": _ms(*find(r"50%\s+([\d.]+)(us|ms|s)").groups()),
        "p99": _ms(*find(r"99%\s+([\d.]+)(us|ms|s)").groups()),
        "requests": int(find(r"(\d+) requests in").group(1)),
        "non_2xx": int(bad.group(1)) if bad else 0,
    }


def measure(
    url: str, root: int, redis_pid: int, script: Path, seconds: int, connections: int
) -> Round:
    pids = process_tree(root)
    (user0, system0), redis0 = cpu_seconds(pids), sum(cpu_seconds([redis_pid]))
    result = run_wrk(url, script, seconds, connections)
    (user1, system1), redis1 = cpu_seconds(pids), sum(cpu_seconds([redis_pid]))
    per_request = 1e6 / max(int(result["requests"]), 1)
    return Round(
        result["rps"], result["p50"], result["p99"], int(result["requests"]),
        int(result["non_2xx"]), (user1 - user0 + system1 - system0) * per_request,
        (system1 - system0) * per_request, (redis1 - redis0) * per_request,
    )  # fmt: skip


def soak(url: str, script: Path, args: argparse.Namespace, rounds: list[Round]) -> int:
    """Requests sent after the measured rounds until ``args.soak`` were served
    in all; how many that was."""
    served = sum(r.requests for r in rounds)
    extra = 0
    while served + extra < args.soak:
        extra += int(run_wrk(url, script, 30, args.connections)["requests"])
    return extra


def token_cache(admin_port: int) -> tuple[float, float]:
    """The gateway's verified-token cache hits and misses so far, from /metrics."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    counts = dict.fromkeys(("hit", "miss"), 0.0)
    sample = r'gateway_token_cache_lookups_total\{result="(\w+)"\} ([\d.e+]+)'
    for match in re.finditer(sample, text):
        counts[match.group(1)] = float(match.group(2))
    return counts["hit"], counts["miss"]


def warm_gateway(url: str, admin_port: int, script: Path, connections: int) -> None:
    """Until each worker's token cache holds (almost) every token, as in a long run.

    The cache is per worker and a connection lands on either, so it takes a
    few runs; the measured rounds then report what hit rate they saw.
    """
    for _ in range(8):
        _, missed = token_cache(admin_port)
        served = run_wrk(url, script, 3, connections)["requests"]
        if token_cache(admin_port)[1] - missed < 0.005 * served:
            return


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


def checkout(ref: str, into: Path, name: str = "baseline") -> Path:
    """The tree of ``ref`` (a commit of this repository), extracted to ``into/name``."""
    tree = into / name
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@contextmanager
def started(
    commands: dict[str, tuple[list[str], int]],
    logs: Path,
    trees: dict[str, Path],
    deadline: float = 20.0,
) -> Iterator[dict[str, int]]:
    """Start each command (in its tree, REPO unless ``trees`` names another),
    wait ``deadline`` seconds at most for its port; yield their pids; stop them all."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (command, port) in commands.items():
            log = (logs / f"{name}.log").open("wb")
            tree = trees.get(name, REPO)
            # The tree's own package first, before the installed one.
            env = {**os.environ, "PYTHONPATH": str(tree)}
            processes[name] = subprocess.Popen(
                command, cwd=tree, stdout=log, stderr=subprocess.STDOUT, env=env
            )
            wait_listening(port, processes[name], deadline)
        yield {name: process.pid for name, process in processes.items()}
    finally:
        # The proxies first, so they never see their upstream vanish.
        for process in reversed(processes.values()):
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


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
        }  # fmt: skip
        commands = {n: c for n, c in known.items() if n in ("upstream", "redis", *targets)}
        admin_ports = {name: free_port() for name in gateways}
        for name in gateways:
            conf = gateway_conf(
                tmp, name, ports[name], up, w, redis_url, public_pem, admin_ports[name],
                trees.get(name, REPO), owner_check="backend" if name == MYPYC else None,
            )  # fmt: skip
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
            rss_start = {n: {p: rss_mb(p) for p in workers[n]} for n in workers}
            cache_start = {n: token_cache(port) for n, port in admin_ports.items()}
            for _ in range(args.rounds):
                for name in targets:
                    results[name].append(
                        measure(urls[name], pids[name], pids["redis"], script,
                                args.seconds, args.connections)
                    )  # fmt: skip
            soaked = {n: soak(urls[n], script, args, results[n]) for n in workers}
            rss_end = {n: {p: rss_mb(p) for p in workers[n]} for n in workers}
            hit_rates = {}
            for name, port in admin_ports.items():
                (hits, misses), (hits0, misses0) = token_cache(port), cache_start[name]
                hit_rates[name] = (hits - hits0) / max(hits - hits0 + misses - misses0, 1)
        load.append(os.getloadavg()[0])
        report(args, results, rss_start, rss_end, roles, hit_rates, soaked, load)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[str, list[Round]],
    rss_start: dict[str, dict[int, float]],
    rss_end: dict[str, dict[int, float]],
    roles: dict[int, str],
    hit_rates: dict[str, float],
    soaked: dict[str, int],
    load: list[float],
) -> None:
    print(
        f"DELETE /v2/images/<uuid>, {TOKENS} RS256 tokens, wrk -t1 -c{args.connections}, "
        f"{args.rounds} alternating rounds x {args.seconds}s, {args.workers} workers/threads, "
        f"cores: {os.cpu_count()}, load average (1 min) as the run started: {load[0]:.1f}, "
        f"as it ended: {load[1]:.1f}"
    )
    print(f"{'':20}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'CPU-us/req':>12}"
          f"{'of it sys':>11}{'redis us':>10}")  # fmt: skip
    for name, rounds in results.items():
        for r in rounds:
            redis = f"{r.redis_cpu_us:10.0f}" if name.startswith("gw-") else f"{'':10}"
            print(f"{name:<20}{r.rps:9.0f}{r.p50_ms:9.2f}{r.p99_ms:9.2f}{r.non_2xx:9d}"
                  f"{r.cpu_us:12.0f}{r.system_us:11.0f}{redis}")  # fmt: skip
    rps = {n: statistics.median(r.rps for r in rounds) for n, rounds in results.items()}
    cpu = {n: statistics.median(r.cpu_us for r in rounds) for n, rounds in results.items()}
    print("medians, as ratios to haproxy:")
    for name in results:
        times = cpu[name] / cpu["haproxy"]
        print(f"  {name:<20} {rps[name] / rps['haproxy']:5.2f}x req/s, "
              f"{cpu[name]:5.0f} CPU-us/req ({times:4.1f}x haproxy's)")  # fmt: skip
    for name, start in rss_start.items():
        served = sum(r.requests for r in results[name]) + soaked[name]
        lines = ", ".join(
            f"{roles[p]} {start[p]:.1f}->{rss_end[name][p]:.1f} MB"
            f" ({(rss_end[name][p] / start[p] - 1):+.1%})"
            for p in start
        )
        print(f"memory {name}: RSS per process over {served} requests: {lines}")
    for name, rate in hit_rates.items():
        print(f"token cache {name}: {rate:.1%} of measured look-ups hit (the rest verified RS256)")


if __name__ == "__main__":
    raise SystemExit(main())
