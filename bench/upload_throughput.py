"""Image upload throughput through the gateway, next to uploading straight to the backend.

One run, alternating rounds, the same sink backend for both (an aiohttp app
in its own process that reads each upload to the end and answers 204):

- ``direct``: the client PUTs to the backend itself;
- ``gateway``: the client PUTs through ``python -m gateway run`` (one
  worker, in its own process), which authenticates the RS256 token, routes
  ``upload_image``, checks the rule on roles (a global admin: no owner
  look-up) and streams the body on.

Each upload is ``--mib`` MiB, chunked, from a generator of 1 MiB blocks, as
glanceclient sends image data. For each round it prints MiB/s of both; then
the median of each and their ratio, and the gateway worker's peak RSS.

    python -m bench.upload_throughput [--mib 512] [--rounds 3]
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
from bench.harness.processes import free_port

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


def gateway_config(backend: str, port: int, key: rsa.RSAPrivateKey) -> dict[str, object]:
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
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"sub": "bench", "project_id": "bench", "roles": ["admin"], "exp": time.time() + 3600},
        key,
        algorithm="RS256",
        headers={"kid": "bench"},
    )
    backend_port, gateway_port = free_port(), free_port()
    backend = f"http://127.0.0.1:{backend_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "gateway.yaml"
        config.write_text(yaml.safe_dump(gateway_config(backend, gateway_port, key)))
        sink = await asyncio.create_subprocess_exec(sys.executable, "-c", SINK, str(backend_port))
        proxy = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--config", str(config), cwd=REPO
        )
        try:
            await wait_listening(backend_port)
            await wait_listening(gateway_port)
            results: dict[str, list[float]] = {"direct": [], "gateway": []}
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await upload(session, gateway, 16, token)  # warm up both paths
                await upload(session, backend, 16, token)
                for number in range(1, args.rounds + 1):
                    direct = await upload(session, backend, args.mib, token)
                    through = await upload(session, gateway, args.mib, token)
                    results["direct"].append(direct)
                    results["gateway"].append(through)
                    print(
                        f"round {number}: direct {direct:7.1f} MiB/s   gateway {through:7.1f} MiB/s"
                    )
            direct_median = statistics.median(results["direct"])
            gateway_median = statistics.median(results["gateway"])
            print(
                f"median of {args.rounds} x {args.mib} MiB: direct {direct_median:.1f} MiB/s, "
                f"gateway {gateway_median:.1f} MiB/s, "
                f"gateway/direct {gateway_median / direct_median:.2f}"
            )
            print(f"gateway worker peak RSS: {peak_rss_mib(proxy.pid):.0f} MiB")
        finally:
            for process in (proxy, sink):
                process.terminate()
                await asyncio.wait_for(process.wait(), 30)


if __name__ == "__main__":
    asyncio.run(main())
