"""Body caps on every body, declared or not: no body over its cap ever completes at the backend.

A chunked upload declares no size: the gateway counts image data as it
streams it and, past ``routes.max_image_bytes``, cuts the upstream request
(the connection reset, the last chunk never sent) and answers 413
``overLimit``, closing the connection after it; when the backend has
answered already and the answer is being relayed, the client's connection
is closed instead. JSON bodies are read whole, bounded, before anything is
forwarded. The backend here is a raw socket that keeps every byte it gets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.security.conftest import RAW_TIMEOUT, LiveGateway, ServeGateway, exchange, parse_response
from tests.support.tokens import TokenFactory

CAP = 64 * 1024
JSON_CAP = 4096
CHUNK = 16 * 1024
IMAGE = str(uuid.uuid4())
LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class BodyRecorder:
    """Keeps each request's bytes after its head, and whether the body ended.

    Answers 204 once a chunked body's last chunk arrives; with ``answer_first``
    it answers at once with a long body it never finishes, and keeps reading."""

    answer_first: bool = False
    bodies: list[bytearray] = field(default_factory=list)
    completed: list[bool] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body, whole = bytearray(), False
        self.bodies.append(body)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if self.answer_first:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100)
            while data := await reader.read(65536):
                body.extend(data)
                if body.endswith(LAST_CHUNK):
                    whole = True
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    await writer.drain()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.completed.append(whole)
            self.ended.set()
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[BodyRecorder]:
    backend = BodyRecorder()
    server = await asyncio.start_server(backend.serve, "127.0.0.1", 0)
    backend.port = server.sockets[0].getsockname()[1]
    yield backend
    server.close()
    await server.wait_closed()


async def capped(serve_gateway: ServeGateway, backend: BodyRecorder) -> LiveGateway:
    return await serve_gateway(
        f"http://127.0.0.1:{backend.port}",
        routes={"max_image_bytes": CAP, "max_json_body_bytes": JSON_CAP},
        rate_limit={"rules": []},
    )


def chunked(total: int, size: int = CHUNK) -> bytes:
    chunks = [b"%x\r\n%s\r\n" % (size, b"\x5a" * size) for _ in range(total // size)]
    return b"".join(chunks) + LAST_CHUNK


def put_file(token: str, framing: str, body: bytes) -> bytes:
    return (
        f"PUT /v2/images/{IMAGE}/file HTTP/1.1\r\nHost: gateway\r\nX-Auth-Token: {token}\r\n"
        f"Content-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    ).encode() + body


async def test_a_chunked_upload_of_three_times_the_cap_never_completes_upstream(
    serve_gateway: ServeGateway,
    recorder: BodyRecorder,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await capped(serve_gateway, recorder)
    caplog.set_level(logging.INFO)
    admin = token("operations", "root", ["admin"])
    raw = await exchange(gateway.port, put_file(admin, "Transfer-Encoding: chunked",
                                                chunked(3 * CAP)))  # fmt: skip
    response = parse_response(raw)
    assert response.status == 413
    fault = json.loads(response.body)["overLimit"]
    assert fault["message"] == "Image data is larger than this gateway accepts."
    assert fault["details"] == f"More than {CAP} bytes; the limit is {CAP}."
    assert response.headers["connection"] == "close"
    await recorder.ended.wait()
    [body] = recorder.bodies
    assert recorder.completed == [False]
    # What arrived is the start of the body, within the cap, without its end.
    assert chunked(3 * CAP).startswith(bytes(body))
    assert LAST_CHUNK not in body
    assert len(body) <= len(chunked(CAP)) - len(LAST_CHUNK)
    request_id = response.headers["x-openstack-request-id"]
    logged = [r.getMessage() for r in caplog.records if getattr(r, "request_id", "") == request_id]
    assert f"image data over {CAP} bytes: the upload to the backend was cut" in logged


async def test_an_upload_at_the_cap_arrives_whole(
    serve_gateway: ServeGateway, recorder: BodyRecorder, token: TokenFactory
) -> None:
    gateway = await capped(serve_gateway, recorder)
    admin = token("operations", "root", ["admin"])
    raw = await exchange(gateway.port, put_file(admin, "Transfer-Encoding: chunked",
                                                chunked(CAP)))  # fmt: skip
    assert parse_response(raw).status == 204
    assert recorder.completed == [True]
    assert bytes(recorder.bodies[0]).endswith(LAST_CHUNK)
    assert bytes(recorder.bodies[0]).count(b"\x5a") == CAP


async def test_a_declared_size_over_the_cap_is_refused_before_a_byte_is_read(
    serve_gateway: ServeGateway, recorder: BodyRecorder, token: TokenFactory
) -> None:
    gateway = await capped(serve_gateway, recorder)
    admin = token("operations", "root", ["admin"])
    data = b"\x5a" * (3 * CAP)
    raw = await exchange(gateway.port, put_file(admin, f"Content-Length: {len(data)}", data))
    response = parse_response(raw)
    assert response.status == 413
    assert json.loads(response.body)["overLimit"]["details"] == (
        f"{3 * CAP} bytes; the limit is {CAP}."
    )
    assert recorder.bodies == []


async def test_a_chunked_json_body_over_its_cap_is_never_forwarded(
    serve_gateway: ServeGateway, recorder: BodyRecorder, token: TokenFactory
) -> None:
    gateway = await capped(serve_gateway, recorder)
    admin = token("operations", "root", ["admin"])
    document = b'{"name": "' + b"x" * (3 * JSON_CAP) + b'"}'
    body = b"%x\r\n%s\r\n" % (len(document), document) + LAST_CHUNK
    raw = await exchange(
        gateway.port,
        (f"POST /v2/images HTTP/1.1\r\nHost: gateway\r\nX-Auth-Token: {admin}\r\n"
         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + body,
    )  # fmt: skip
    response = parse_response(raw)
    assert response.status == 413
    assert json.loads(response.body)["overLimit"]["message"] == "The request body is too large."
    assert recorder.bodies == []


async def test_past_the_cap_after_the_backend_answered_the_connection_is_closed(
    serve_gateway: ServeGateway, recorder: BodyRecorder, token: TokenFactory
) -> None:
    """The answer has begun and cannot become a 413: the upload is cut all
    the same, and the client's connection closes on a short body."""
    recorder.answer_first = True
    gateway = await capped(serve_gateway, recorder)
    admin = token("operations", "root", ["admin"])
    request = put_file(admin, "Transfer-Encoding: chunked", chunked(3 * CAP))
    first_chunk_ends = request.index(b"\r\n\r\n") + 4 + len(chunked(CHUNK)) - len(LAST_CHUNK)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    async with asyncio.timeout(RAW_TIMEOUT):
        writer.write(request[:first_chunk_ends])
        # The backend's answer is relayed before the rest of the body is sent.
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        writer.write(request[first_chunk_ends:])
        # Everything until the gateway closes the connection.
        relayed = await reader.read(-1)
    writer.close()
    assert len(relayed) < 1_000_000  # cut short, the connection closed under it
    await recorder.ended.wait()
    assert recorder.completed == [False]
    assert LAST_CHUNK not in recorder.bodies[0]
