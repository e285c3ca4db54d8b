"""Throughput of the gateway next to HAProxy enforcing the same policy.

Our bar is a C proxy doing the same work on the same cores: HAProxy 2.6 with
``jwt_verify`` (HS256), an expiry check, a role check, a per-project stick
table, identity headers and a request id, in front of the same nginx that
answers 204. Both run side by side in one run, alternating, so the machine's
noise hits both; the ratio is what to read.

The gateway is measured on the path a hot deployment sees most: a cached
verified token and a global-admin caller (no owner look-up, which HAProxy
could not do at all).

Needs Debian's nginx-light (or nginx), haproxy and wrk:

    apt-get install -y nginx-light haproxy wrk
    python bench/gateway_vs_haproxy.py [--seconds 10] [--workers 2] [--connections 64]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {deadline}s")


def nginx_conf(tmp: Path, port: int) -> Path:
    path = tmp / "nginx.conf"
    path.write_text(
        f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }}
}}
"""
    )
    return path


def haproxy_conf(tmp: Path, port: int, upstream: int, threads: int) -> Path:
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
  http-request deny deny_status 401 unless {{ var(txn.alg) -m str HS256 }}
  acl signed var(txn.token),jwt_verify("HS256","{SECRET}") -m int 1
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


def gateway_conf(tmp: Path, port: int, upstream: int, workers: int) -> Path:
    path = tmp / "gateway.yaml"
    path.write_text(
        f"""listen: {{host: 127.0.0.1, port: {port}, workers: {workers}}}
upstream: {{url: "http://127.0.0.1:{upstream}"}}
auth:
  keys: [{{kid: bench, algorithm: HS256, secret: "{SECRET}"}}]
rate_limit:
  store: memory
  rules: [{{name: deletes, methods: [DELETE], unit: day, value: 1000000000}}]
logging: {{level: WARNING}}
"""
    )
    return path


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> Result:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    assert p50 is not None
    assert p99 is not None
    return Result(rps, _ms(*p50.groups()), _ms(*p99.groups()), int(bad.group(1)) if bad else 0)


def check(url: str, token: str) -> None:
    """Both proxies must enforce the policy before their speed means anything."""

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
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=2, help="gateway processes = haproxy threads"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    missing = [b for b in ("nginx", "haproxy", "wrk") if shutil.which(b) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install nginx-light haproxy wrk)")
        return 2

    now = int(time.time())
    claims = {"sub": "root", "project_id": "bench", "roles": ["admin"], "exp": now + 3600}
    token = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "bench"})
    path = f"/v2/images/{uuid.uuid4()}"
    ports = {name: free_port() for name in ("nginx", "haproxy", "gateway")}
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "delete.lua"
        script.write_text(f'wrk.method = "DELETE"\nwrk.headers["X-Auth-Token"] = "{token}"\n')
        try:
            commands = {
                "nginx": ["nginx", "-p", str(tmp), "-e", "stderr",
                          "-c", str(nginx_conf(tmp, ports["nginx"]))],
                "haproxy": ["haproxy", "-f",
                            str(haproxy_conf(tmp, ports["haproxy"], ports["nginx"], args.workers))],
                "gateway": [sys.executable, "-m", "gateway", "run", "--config",
                            str(gateway_conf(tmp, ports["gateway"], ports["nginx"], args.workers))],
            }  # fmt: skip
            for name, command in commands.items():
                process = subprocess.Popen(command, cwd=REPO, env={**os.environ})
                processes.append(process)
                wait_listening(ports[name], process)
            targets = {
                name: f"http://127.0.0.1:{ports[name]}{path}" for name in ("haproxy", "gateway")
            }
            for url in targets.values():
                check(url, token)
                run_wrk(url, script, 2, args.connections)  # warm-up
            results: dict[str, list[Result]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, url in targets.items():
                    results[name].append(run_wrk(url, script, args.seconds, args.connections))
        finally:
            # The proxies first, so they never see their upstream vanish.
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                process.wait(timeout=15)

    print(
        f"DELETE {path} through the full policy, {args.workers} gateway workers vs "
        f"{args.workers} haproxy threads, wrk -t1 -c{args.connections}, "
        f"{args.rounds} x {args.seconds}s each, alternating; cores: {os.cpu_count()}"
    )
    print(f"{'':10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    best = {}
    for name, runs in results.items():
        best[name] = max(r.rps for r in runs)
        for r in runs:
            print(f"{name:10}{r.rps:10.0f}{r.p50_ms:10.2f}{r.p99_ms:10.2f}{r.non_2xx:10d}")
    print(f"gateway / haproxy throughput (best of each): {best['gateway'] / best['haproxy']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
