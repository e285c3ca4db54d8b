"""Image upload throughput through the gateway, next to uploading straight to the backend.

One run, alternating rounds, the same sink backend for both (an aiohttp app
in its own process that reads each upload to the end and answers 204):

- ``direct``: the client PUTs to the backend itself;
- ``gateway``: the client PUTs through ``python -m gateway run`` (one
  worker, in its own process), which authenticates the RS256 token, routes
  ``upload_image``, checks the rule on roles (a global admin: no owner
  look-up) and streams the body on, counting it against
  ``routes.max_image_bytes`` (set to twice the upload);
- with ``--baseline REF``, ``gateway@REF``: the same from that commit's tree
  (git archive), in the same rounds.

Each upload is ``--mib`` MiB, chunked, from a generator of 1 MiB blocks, as
glanceclient sends image data. For each round it prints MiB/s of each; then
the median of each and their ratios, and each gateway worker's peak RSS.

    python -m bench.upload_throughput [--mib 512] [--rounds 3] [--baseline main]
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
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.harness import REPO
from bench.harness.processes import checkout, free_port

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
    parser.add_argument("--baseline", metavar="REF", help="also upload through this commit's")
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"sub": "bench", "project_id": "bench", "roles": ["admin"], "exp": time.time() + 3600},
        key,
        algorithm="RS256",
        headers={"kid": "bench"},
    )
    backend_port = free_port()
    backend = f"http://127.0.0.1:{backend_port}"
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"gateway": REPO}
        if args.baseline:
            trees[f"gateway@{args.baseline}"] = checkout(args.baseline, Path(scratch))
        urls: dict[str, str] = {}
        processes: dict[str, asyncio.subprocess.Process] = {}
        sink = await asyncio.create_subprocess_exec(sys.executable, "-c", SINK, str(backend_port))
        try:
            for name, tree in trees.items():
                port = free_port()
                config = Path(scratch) / f"{port}.yaml"
                settings = gateway_config(backend, port, key, 2 * args.mib << 20)
                config.write_text(yaml.safe_dump(settings))
                processes[name] = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "run", "--config", str(config), cwd=tree
                )
                urls[name] = f"http://127.0.0.1:{port}"
            await wait_listening(backend_port)
            for url in urls.values():
                await wait_listening(int(url.rsplit(":", 1)[1]))
            urls = {"direct": backend, **urls}
            results: dict[str, list[float]] = {name: [] for name in urls}
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for url in urls.values():
                    await upload(session, url, 16, token)  # warm up every path
                for number in range(1, args.rounds + 1):
                    line = []
                    for name, url in urls.items():
                        rate = await upload(session, url, args.mib, token)
                        results[name].append(rate)
                        line.append(f"{name} {rate:7.1f} MiB/s")
                    print(f"round {number}: " + "   ".join(line), flush=True)
            medians = {name: statistics.median(rates) for name, rates in results.items()}
            print(f"median of {args.rounds} x {args.mib} MiB: " + ", ".join(
                f"{name} {rate:.1f} MiB/s" for name, rate in medians.items()))  # fmt: skip
            for name in trees:
                print(f"{name}/direct {medians[name] / medians['direct']:.2f}")
            if args.baseline:
                base = f"gateway@{args.baseline}"
                print(f"gateway/{base} {medians['gateway'] / medians[base]:.3f}")
            for name, process in processes.items():
                print(f"{name} worker peak RSS: {peak_rss_mib(process.pid):.0f} MiB")
        finally:
            for process in (*processes.values(), sink):
                process.terminate()
                await asyncio.wait_for(process.wait(), 30)


if __name__ == "__main__":
    asyncio.run(main())
