"""Image data streams through the gateway both ways, never buffered whole.

The gateway runs as the operator runs it (``python -m gateway run``, one
worker) in front of a backend that hashes what it receives; the client
uploads from a generator. The worker's peak resident memory (VmHWM) is
compared with what it held before the upload.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.gateway_config import config_data
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory

IMAGE_ID = "0f4f1f0e-8d3c-4c1a-9a55-3e2b7d9c6a10"
UPLOAD = f"/v2/images/{IMAGE_ID}/file"
GIB = 1 << 30
BLOCK = 1 << 20
MAX_RSS_GROWTH = 50 * (1 << 20)


@dataclass
class HashingBackend:
    """Hashes each upload as it arrives; serves downloads from a generator."""

    digests: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    url: str = ""

    async def upload(self, request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        self.digests.append(digest.hexdigest())
        self.sizes.append(size)
        return web.Response(status=204)

    async def download(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Content-MD5": "x" * 24}
        )
        response.content_length = GIB
        await response.prepare(request)
        for index in range(GIB // BLOCK):
            await response.write(block(index))
        await response.write_eof()
        return response


def block(index: int) -> bytes:
    # Every block differs, so a lost, repeated or reordered one changes the digest.
    return index.to_bytes(8, "big") * (BLOCK // 8)


async def generated(blocks: int) -> AsyncIterator[bytes]:
    for index in range(blocks):
        yield block(index)


def expected_sha256(blocks: int) -> str:
    digest = hashlib.sha256()
    for index in range(blocks):
        digest.update(block(index))
    return digest.hexdigest()


@pytest.fixture
async def hashing_backend() -> AsyncIterator[HashingBackend]:
    backend = HashingBackend()
    app = web.Application(client_max_size=GIB)
    app.router.add_put(UPLOAD, backend.upload)
    app.router.add_get(UPLOAD, backend.download)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    backend.url = str(server.make_url("")).rstrip("/")
    yield backend
    await server.close()


def memory_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} for {pid}")


@pytest.fixture
async def running_gateway(
    hashing_backend: HashingBackend, keys: Keys, tmp_path: Path
) -> AsyncIterator[GatewayProcess]:
    config = config_data(
        hashing_backend.url,
        keys,
        listen={"host": "127.0.0.1", "port": free_port(), "workers": 1, "shutdown_timeout": 2},
        upstream={"read_timeout": 1},
        admin={"enabled": False},
        logging={"level": "WARNING"},
    )
    process = await GatewayProcess.run(config, tmp_path).start()
    # One request answered first, so what serving a first request costs is in the
    # memory the tests measure against, not in the growth.
    async with aiohttp.ClientSession() as client, client.get(f"{process.url}/") as response:
        assert response.status > 0
    yield process
    await process.stop()


async def upload(
    gateway: GatewayProcess,
    data: AsyncIterator[bytes],
    headers: dict[str, str],
    *,
    expect100: bool = False,
) -> int:
    """PUT image data through the gateway; the status it answered."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as client,
        client.put(gateway.url + UPLOAD, data=data, headers=headers, expect100=expect100) as r,
    ):
        await r.read()
        return r.status


def admin_headers(token: TokenFactory) -> dict[str, str]:
    # A global admin: decided on roles, so no owner look-up reaches the backend.
    return {
        "X-Auth-Token": token("operations", "root", ["admin"]),
        "Content-Type": "application/octet-stream",
    }


async def test_a_1gib_upload_from_a_generator_streams_with_flat_memory(
    running_gateway: GatewayProcess, hashing_backend: HashingBackend, token: TokenFactory
) -> None:
    pid = running_gateway.pid
    before = memory_kib(pid, "VmRSS")
    blocks = GIB // BLOCK
    # Chunked, as glanceclient sends it: no Content-Length.
    status = await upload(running_gateway, generated(blocks), admin_headers(token))
    assert status == 204
    peak = memory_kib(pid, "VmHWM")
    assert hashing_backend.sizes == [GIB]
    assert hashing_backend.digests == [expected_sha256(blocks)]
    assert (peak - before) * 1024 < MAX_RSS_GROWTH, f"grew {(peak - before) // 1024} MiB"


async def test_a_1gib_download_streams_byte_for_byte_with_flat_memory(
    running_gateway: GatewayProcess, token: TokenFactory
) -> None:
    pid = running_gateway.pid
    before = memory_kib(pid, "VmRSS")
    digest, size = hashlib.sha256(), 0
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as client,
        client.get(running_gateway.url + UPLOAD, headers=admin_headers(token)) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Length"] == str(GIB)
        assert response.headers["Content-MD5"] == "x" * 24
        async for chunk in response.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
    peak = memory_kib(pid, "VmHWM")
    assert size == GIB
    assert digest.hexdigest() == expected_sha256(GIB // BLOCK)
    assert (peak - before) * 1024 < MAX_RSS_GROWTH, f"grew {(peak - before) // 1024} MiB"


async def test_a_slow_but_live_upload_outlasts_the_read_timeout(
    running_gateway: GatewayProcess, hashing_backend: HashingBackend, token: TokenFactory
) -> None:
    """upstream.read_timeout is 1 s here: it bounds each wait, not the whole upload."""

    async def trickle() -> AsyncIterator[bytes]:
        for index in range(8):
            # The client's own pace, well under the idle timeout per read.
            await asyncio.sleep(0.3)
            yield block(index)

    assert await upload(running_gateway, trickle(), admin_headers(token)) == 204
    assert hashing_backend.digests == [expected_sha256(8)]


async def test_expect_100_continue_upload_arrives_whole(
    running_gateway: GatewayProcess, hashing_backend: HashingBackend, token: TokenFactory
) -> None:
    status = await upload(running_gateway, generated(16), admin_headers(token), expect100=True)
    assert status == 204
    assert hashing_backend.digests == [expected_sha256(16)]


async def test_an_expect_100_continue_upload_the_gateway_refuses_never_reaches_the_backend(
    running_gateway: GatewayProcess, hashing_backend: HashingBackend, token: TokenFactory
) -> None:
    headers = {**admin_headers(token), "X-Auth-Token": token(roles=["cloudImages:observer"])}
    assert await upload(running_gateway, generated(16), headers, expect100=True) == 403
    assert hashing_backend.digests == []
