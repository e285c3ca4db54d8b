"""Image upload throughput through the gateway, next to uploading straight to the backend.

One run, alternating rounds, the same sink backend for both (an aiohttp app
in its own process that reads each upload to the end and answers 204):

- ``direct``: the client PUTs to the backend itself;
- ``gateway``: the client PUTs through ``python -m gateway run`` (one
  worker, in its own process), which authenticates the RS256 token, routes
  ``upload_image``, checks the rule on roles (a global admin: no owner
  look-up) and streams the body on, counting it against
  ``routes.max_image_bytes`` (set to twice the upload);
- ``gateway+bytes``: the same with a byte rule on ``upload_image`` (a budget
  the uploads stay within) kept in a Redis the bench starts: the body
  reserves a slice (the configuration's default, 16 MiB) each time it
  passes what it holds, one Redis call per slice; with ``--byte-slice``
  (given once or more), ``gateway+bytes@SIZE``, one gateway per slice size
  instead, so that what a slice costs shows in one run;
- ``gateway-again``: a second gateway exactly like ``gateway``, uploaded
  through after ``gateway+bytes`` in each round: its ratio to ``gateway`` is
  what the machine's noise and the order of the rounds alone make of two
  equal gateways, the yardstick for the byte rule's;
- with ``--baseline REF``, ``gateway@REF``: the same as ``gateway`` from
  that commit's tree (git archive), in the same rounds.

Each upload is ``--mib`` MiB, chunked, from a generator of 1 MiB blocks, as
glanceclient sends image data. For each round it prints MiB/s of each; then
the median of each, their ratios, the CPU each gateway's processes spent
per GiB (user + system, summed over the rounds: less moved by the machine's
load than MiB/s), each gateway worker's peak RSS, and how many script calls
Redis ran (the byte rule's reservations and refunds).

    python -m bench.upload_throughput [--mib 512] [--rounds 3]
        [--byte-slice 1MiB --byte-slice 16MiB] [--baseline main]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import redis
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.harness import REPO
from bench.harness.cpu import cpu_seconds, process_tree
from bench.harness.processes import checkout, free_port
from bench.harness.services import backing_services

BLOCK = b"\x5a" * (1 << 20)
IMAGE = str(uuid.uuid4())
UPLOAD = f"/v2/images/{IMAGE}/file"

SINK = """
import sys
from aiohttp import web

async def sink(request):
    async for _ in request.content.iter_any():
        pass
    return web.Response(status=204)

app = web.Application()
app.router.add_put("/{tail:.*}", sink)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            await asyncio.sleep(0.05)  # polling for a server to come up
            continue
        writer.close()
        await writer.wait_closed()
        return


async def blocks(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield BLOCK


async def upload(session: aiohttp.ClientSession, url: str, mib: int, token: str) -> float:
    """MiB/s of one upload."""
    started = time.perf_counter()
    headers = {"X-Auth-Token": token, "Content-Type": "application/octet-stream"}
    async with session.put(url + UPLOAD, data=blocks(mib), headers=headers) as response:
        await response.read()
        if response.status != 204:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
    return mib / (time.perf_counter() - started)


def byte_rule(redis_port: int, byte_slice: str | None) -> dict[str, object]:
    """A byte budget on uploads that the bench's uploads stay within; slices
    of ``byte_slice``, or of the configuration's default."""
    budget = {"name": "upload-bytes", "count": "bytes", "routes": ["upload_image"],
              "unit": "hour", "value": "1PiB"}  # fmt: skip
    section: dict[str, object] = {
        "store": "redis",
        "redis": {"url": f"redis://127.0.0.1:{redis_port}/0"},
        "rules": [budget],
    }
    if byte_slice is not None:
        section["byte_slice"] = byte_slice
    return {"rate_limit": section}


def script_calls(redis_port: int) -> int:
    """How many EVALSHA calls Redis has run."""
    client = redis.Redis(port=redis_port)
    try:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    finally:
        client.close()


def gateway_config(
    backend: str, port: int, key: rsa.RSAPrivateKey, max_image_bytes: int
) -> dict[str, object]:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "listen": {"host": "127.0.0.1", "port": port, "workers": 1},
        "upstream": {"url": backend},
        "auth": {"keys": [{"kid": "bench", "algorithm": "RS256", "public_key": public.decode()}]},
        "admin": {"enabled": False},
        "logging": {"level": "WARNING"},
        "audit": {"sink": "/dev/null"},
        "routes": {"max_image_bytes": max_image_bytes},
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--byte-slice",
        action="append",
        help="a byte rule's slice size, once or more (default: the configuration's)",
    )
    parser.add_argument("--baseline", metavar="REF", help="also upload through this commit's")
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"sub": "bench", "project_id": "bench", "roles": ["admin"], "exp": time.time() + 3600},
        key,
        algorithm="RS256",
        headers={"kid": "bench"},
    )
    backend_port, redis_port = free_port(), free_port()
    backend = f"http://127.0.0.1:{backend_port}"
    with tempfile.TemporaryDirectory() as scratch:
        # Each gateway: its tree, and what its configuration adds.
        targets: dict[str, tuple[Path, dict[str, object]]] = {"gateway": (REPO, {})}
        for size in args.byte_slice or [None]:
            name = "gateway+bytes" if size is None else f"gateway+bytes@{size}"
            targets[name] = (REPO, byte_rule(redis_port, size))
        targets["gateway-again"] = (REPO, {})
        if args.baseline:
            targets[f"gateway@{args.baseline}"] = (checkout(args.baseline, Path(scratch)), {})
        redis_command, _ = backing_services(Path(scratch), free_port(), redis_port)["redis"]
        redis_server = await asyncio.create_subprocess_exec(
            *redis_command, stdout=asyncio.subprocess.DEVNULL
        )
        urls: dict[str, str] = {}
        ports = [backend_port, redis_port]
        processes: dict[str, asyncio.subprocess.Process] = {}
        sink = await asyncio.create_subprocess_exec(sys.executable, "-c", SINK, str(backend_port))
        try:
            for name, (tree, extra) in targets.items():
                port = free_port()
                ports.append(port)
                config = Path(scratch) / f"{port}.yaml"
                settings = gateway_config(backend, port, key, 2 * args.mib << 20)
                config.write_text(yaml.safe_dump({**settings, **extra}))
                processes[name] = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "run", "--config", str(config), cwd=tree
                )
                urls[name] = f"http://127.0.0.1:{port}"
            for port in ports:
                await wait_listening(port)
            urls = {"direct": backend, **urls}
            results: dict[str, list[float]] = {name: [] for name in urls}
            cpu = dict.fromkeys(targets, 0.0)
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for url in urls.values():
                    await upload(session, url, 16, token)  # warm up every path
                calls_before = script_calls(redis_port)
                for number in range(1, args.rounds + 1):
                    line = []
                    for name, url in urls.items():
                        pids = process_tree(processes[name].pid) if name in targets else []
                        before = sum(cpu_seconds(pids))
                        rate = await upload(session, url, args.mib, token)
                        if name in targets:
                            cpu[name] += sum(cpu_seconds(pids)) - before
                        results[name].append(rate)
                        line.append(f"{name} {rate:7.1f} MiB/s")
                    print(f"round {number}: " + "   ".join(line), flush=True)
                calls = script_calls(redis_port) - calls_before
            medians = {name: statistics.median(rates) for name, rates in results.items()}
            print(f"median of {args.rounds} x {args.mib} MiB: " + ", ".join(
                f"{name} {rate:.1f} MiB/s" for name, rate in medians.items()))  # fmt: skip
            for name in targets:
                print(f"{name}/direct {medians[name] / medians['direct']:.2f}")
            others = [name for name in targets if name.startswith("gateway+bytes")]
            others.append("gateway-again")
            for name in others:
                print(f"{name}/gateway {medians[name] / medians['gateway']:.3f}")
            if args.baseline:
                base = f"gateway@{args.baseline}"
                print(f"gateway/{base} {medians['gateway'] / medians[base]:.3f}")
            gib = args.rounds * args.mib / 1024
            per_gib = ", ".join(f"{name} {cpu[name] / gib:.2f} s" for name in targets)
            ratios = ", ".join(
                f"{name}/gateway {cpu[name] / cpu['gateway']:.3f}" for name in others
            )
            print(f"CPU per GiB: {per_gib}; {ratios}")
            print(
                f"Redis script calls, {args.rounds} uploads through each gateway with a byte"
                f" rule: {calls} in all"
            )
            for name, process in processes.items():
                print(f"{name} worker peak RSS: {peak_rss_mib(process.pid):.0f} MiB")
        finally:
            for process in (*processes.values(), sink, redis_server):
                process.terminate()
                await asyncio.wait_for(process.wait(), 30)


if __name__ == "__main__":
    asyncio.run(main())
