"""What the security suite shares: a backend that records raw bytes, and raw clients.

A test of the header boundary must see exactly what reached the backend,
bytes and spelling included, not what a parser made of it; and a test of
malformed input must send exactly the bytes it means, which no HTTP client
library will.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from gateway.app import GATEWAY, build_app
from gateway.config import parse_config
from gateway.runtime.server import start_site
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys

RAW_TIMEOUT = 10.0


@dataclass
class RawBackend:
    """An HTTP/1.1 backend on a plain socket that keeps each request head as bytes.

    GET of an image answers that project ``owner`` owns it; anything else
    answers 204. Bodies are not expected (the routes under test take none).
    """

    owner: str = "project-a"
    heads: list[bytes] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, method: str) -> list[bytes]:
        return [h for h in self.heads if h.startswith(method.encode() + b" ")]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                if head.startswith(b"GET /v2/images/"):
                    body = json.dumps({"owner": self.owner, "visibility": "private"}).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                else:
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def listening(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A plain socket server on a free loopback port, for as long as the block runs."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def raw_backend() -> AsyncIterator[RawBackend]:
    backend = RawBackend()
    async with listening(backend.serve) as backend.port:
        yield backend


def header_lines(head: bytes) -> list[tuple[bytes, bytes]]:
    """A raw request head's header lines as (name, value), spelling kept."""
    lines = head.split(b"\r\n")[1:]
    return [tuple(line.split(b":", 1)) for line in lines if line]  # type: ignore[misc]


async def exchange(port: int | None, data: bytes, *, deadline: float = RAW_TIMEOUT) -> bytes:
    """Send raw bytes and read one whole answer: its head, then its body by
    Content-Length (none for a 204), or until the server closes; b"" when the
    server closes without answering. The client never half-closes: aiohttp
    drops a connection whose client did, before answering."""
    assert port is not None, "the server is not listening"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(deadline):
            head = b"HTTP/1.1 100"
            # Interim answers (100 Continue) come before the one that counts.
            while head.startswith(b"HTTP/1.1 1"):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    return exc.partial
                except ConnectionError:
                    return b""
            length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            if data.startswith(b"HEAD "):
                return head
            if length is not None:
                return head + await reader.readexactly(int(length.group(1)))
            if head.split(b" ", 2)[1] in (b"204", b"304"):
                return head
            return head + await reader.read(-1)
    finally:
        writer.close()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body)


@dataclass
class LiveGateway:
    """The gateway served as ``run`` serves it: its own protocol, a real port."""

    app: web.Application
    runner: web.AppRunner
    port: int


# serve_gateway: a gateway served from a config made of tests.conftest's plus sections.
ServeGateway = Callable[..., Awaitable[LiveGateway]]


@pytest.fixture
async def serve_gateway(keys: Keys) -> AsyncIterator[ServeGateway]:
    runners: list[web.AppRunner] = []

    async def serve(upstream_url: str, **sections: Any) -> LiveGateway:
        config = parse_config(config_data(upstream_url, keys, **sections))
        app = build_app(config)
        runner = await start_site(
            app, "127.0.0.1", 0, limits=app[GATEWAY].client_limits, shutdown_timeout=1.0
        )
        runners.append(runner)
        port = runner.addresses[0][1]
        return LiveGateway(app, runner, port)

    yield serve
    for runner in runners:
        await runner.cleanup()
