"""The lean upstream client against real servers on real sockets.

Well-behaved cases run against an aiohttp upstream; misbehaving ones
(partial bodies, resets, slow or stalled reads, 1xx, Connection: close,
answers before the body) against raw asyncio servers that write exactly the
bytes under test.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.http.client import (
    BodyCutShort,
    BodyOverLimit,
    BodyRefused,
    ConnectError,
    Disconnected,
    HttpClient,
    RequestBodyError,
    StreamedBody,
    UpstreamError,
    UpstreamTimeout,
)
from tests.support.ports import free_port

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def make_client(port: int, **overrides: float) -> HttpClient:
    settings: dict[str, float] = {
        "max_connections": 10,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "keepalive_timeout": 30.0,
    }
    settings.update(overrides)
    return HttpClient(
        f"http://127.0.0.1:{port}",
        max_connections=int(settings["max_connections"]),
        connect_timeout=settings["connect_timeout"],
        read_timeout=settings["read_timeout"],
        keepalive_timeout=settings["keepalive_timeout"],
    )


@asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[int]:
    """A TCP server that runs ``handler`` per connection; yields its port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answering(raw: bytes, *, then_close: bool = False) -> RawHandler:
    """A server that reads one request head and writes ``raw``, then closes or waits."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(raw)
        await writer.drain()
        if then_close:
            writer.close()
        else:
            await reader.read()

    return handler


@dataclass
class Upstream:
    """An aiohttp upstream that records each request and the connection it came on."""

    port: int = 0
    connections: list[tuple[str, int]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    first_chunk_seen: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def until_in_flight(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.in_flight >= count)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None and tuple(peer) not in self.connections:
            self.connections.append(tuple(peer))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        async with self.changed:
            self.changed.notify_all()
        try:
            if request.path == "/hold":
                await self.release.wait()
            if request.path == "/stream-in":
                # Reads the first chunk of the body before the sender has
                # finished sending it: the body is streamed, not buffered.
                first = await request.content.readany()
                self.first_chunk_seen.set()
                body = first + await request.content.read()
            else:
                body = await request.read()
            self.requests.append((request.method, request.path_qs, dict(request.headers), body))
            if request.path == "/stream-out":
                response = web.StreamResponse(headers={"X-Part": "1"})
                await response.prepare(request)
                await response.write(b"first,")
                await self.release.wait()
                await response.write(b"second")
                await response.write_eof()
                return response
            if request.path == "/close":
                return web.Response(text="bye", headers={"Connection": "close"})
            return web.Response(
                body=hashlib.sha256(body).hexdigest().encode(),
                headers={"X-Length": str(len(body)), "X-Multi": "a"},
            )
        finally:
            self.in_flight -= 1


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    recorder = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    recorder.port = server.port
    yield recorder
    recorder.release.set()
    await server.close()


async def get_text(client: HttpClient, path: str) -> tuple[int, bytes]:
    async with await client.request("GET", path) as response:
        return response.status, await response.read(1 << 20)


async def test_keep_alive_reuses_one_connection(upstream: Upstream) -> None:
    client = make_client(upstream.port)
    for _ in range(5):
        status, body = await get_text(client, "/a?x=1")
        assert status == 200
        assert body == hashlib.sha256(b"").hexdigest().encode()
    assert len(upstream.connections) == 1
    assert client.open_connections == client.idle_connections == 1
    assert [r[1] for r in upstream.requests] == ["/a?x=1"] * 5
    await client.close()
    assert client.open_connections == 0


async def test_connections_are_bounded_and_waiters_served(upstream: Upstream) -> None:
    client = make_client(upstream.port, max_connections=2)
    tasks = [asyncio.create_task(get_text(client, "/hold")) for _ in range(6)]
    await upstream.until_in_flight(2)
    assert client.open_connections == 2
    upstream.release.set()
    results = await asyncio.gather(*tasks)
    assert [status for status, _ in results] == [200] * 6
    assert upstream.most_in_flight == 2
    assert len(upstream.connections) == 2
    await client.close()


async def test_waiting_for_a_free_connection_times_out(upstream: Upstream) -> None:
    client = make_client(upstream.port, max_connections=1, connect_timeout=0.2)
    holder = asyncio.create_task(get_text(client, "/hold"))
    await upstream.until_in_flight(1)
    with pytest.raises(UpstreamTimeout, match="no connection free"):
        await get_text(client, "/a")
    upstream.release.set()
    assert (await holder)[0] == 200
    # The timed-out waiter left nothing behind: the next request goes through.
    assert (await get_text(client, "/a"))[0] == 200
    await client.close()


async def test_connect_refused_is_a_connect_error() -> None:
    client = make_client(free_port())
    with pytest.raises(ConnectError):
        await client.request("GET", "/")
    assert client.open_connections == 0


async def test_request_body_streams_with_content_length(upstream: Upstream) -> None:
    payload = [bytes([i]) * 65536 for i in range(32)]
    gate = upstream.first_chunk_seen

    async def chunks() -> AsyncIterator[bytes]:
        yield payload[0]
        # The upstream must have the first chunk before the rest exists.
        await gate.wait()
        for chunk in payload[1:]:
            yield chunk

    whole = b"".join(payload)
    body = StreamedBody(chunks(), len(whole))
    async with await client_for(upstream).request("PUT", "/stream-in", body=body) as response:
        assert response.status == 200
        assert await response.read(100) == hashlib.sha256(whole).hexdigest().encode()
    method, _, headers, received = upstream.requests[-1]
    assert method == "PUT"
    assert headers["Content-Length"] == str(len(whole))
    assert "Transfer-Encoding" not in headers
    assert received == whole


def client_for(upstream: Upstream) -> HttpClient:
    return make_client(upstream.port)


async def test_request_body_without_length_is_chunked(upstream: Upstream) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            yield b"%d," % i

    expected = b"".join(b"%d," % i for i in range(100))
    client = client_for(upstream)
    async with await client.request("POST", "/up", body=StreamedBody(chunks(), None)) as response:
        assert await response.read(100) == hashlib.sha256(expected).hexdigest().encode()
    _, _, headers, received = upstream.requests[-1]
    assert headers["Transfer-Encoding"] == "chunked"
    assert received == expected
    # Sent whole and answered whole: the connection is kept.
    assert client.idle_connections == 1


async def test_an_empty_post_is_framed_with_zero_length(upstream: Upstream) -> None:
    client = client_for(upstream)
    async with await client.request("POST", "/deactivate") as response:
        assert response.status == 200
    assert upstream.requests[-1][2]["Content-Length"] == "0"


def reading_to_the_end() -> tuple[RawHandler, bytearray, asyncio.Event]:
    """A server that reads a request's head, then its bytes until the client
    closes; what it read, and an event set once it has."""
    received = bytearray()
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        received.extend(await reader.read())  # to EOF: the client aborted
        closed.set()
        writer.close()

    return handler, received, closed


async def test_a_failing_body_source_aborts_the_upstream_request() -> None:
    """The client went away mid-upload: the backend sees a cut request, never a whole one."""
    handler, received, closed = reading_to_the_end()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise ConnectionResetError("client gone")

    async with raw_server(handler) as port:
        client = make_client(port)
        with pytest.raises(RequestBodyError, match=r"\(ConnectionResetError\)") as raised:
            await client.request("PUT", "/file", body=StreamedBody(chunks(), 5000))
        # The source's own message stays on the cause, out of the error's text.
        assert "client gone" not in str(raised.value)
        assert str(raised.value.__cause__) == "client gone"
        await closed.wait()
        assert bytes(received) == b"x" * 1000
        assert client.open_connections == 0


@dataclass
class Allowance:
    """A body meter that covers up to ``most`` bytes, asked a step at a time."""

    most: int
    step: int = 1000
    reserved: int = 0
    moved: int = 0
    asked: list[int] = field(default_factory=list)

    async def cover(self, through: int) -> None:
        self.asked.append(through)
        while self.reserved < through:
            if self.reserved >= self.most:
                raise LookupError("no more")
            self.reserved = min(self.reserved + self.step, self.most)


async def test_a_metered_body_goes_as_far_as_its_meter_allows_and_is_cut_there() -> None:
    handler, received, closed = reading_to_the_end()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 700

    meter = Allowance(most=2500)
    async with raw_server(handler) as port:
        client = make_client(port)
        with pytest.raises(BodyRefused) as raised:
            await client.request("PUT", "/file", body=StreamedBody(chunks(), None, meter=meter))
        assert isinstance(raised.value.__cause__, LookupError)
        await closed.wait()
    # Chunked: four chunks of 700 bytes want 2800; the fourth goes as far as
    # the meter allowed (400), and no last chunk ever follows.
    whole_chunk = b"2bc\r\n" + b"x" * 700 + b"\r\n"
    assert bytes(received) == whole_chunk * 3 + b"190\r\n" + b"x" * 400 + b"\r\n"
    assert meter.moved == 2500
    # Asked only when a chunk went past what was covered.
    assert meter.asked == [700, 1400, 2100, 2800]


async def test_a_short_body_source_is_an_error_not_a_short_request() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await reader.read()
        writer.close()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"only this"

    async with raw_server(handler) as port:
        client = make_client(port)
        with pytest.raises(RequestBodyError, match="ended at 9 of 100"):
            await client.request("PUT", "/file", body=StreamedBody(chunks(), 100))
        assert client.open_connections == 0


def recording(received: bytearray, ended: asyncio.Event) -> RawHandler:
    """A server that keeps every byte after the request head until the
    client closes or resets the connection, and never answers."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        try:
            while data := await reader.read(65536):
                received.extend(data)
        except ConnectionError:
            pass
        ended.set()
        writer.close()

    return handler


async def test_a_chunked_body_over_its_limit_never_ends_at_the_upstream() -> None:
    """Counted as it flows: the chunk that crosses the limit is not sent, nor
    the last chunk, and the connection is reset, so the upstream holds an
    unfinished request, never a complete one."""
    received, ended = bytearray(), asyncio.Event()
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(30):
            pulled += 1
            yield b"x" * 1000

    async with raw_server(recording(received, ended)) as port:
        client = make_client(port)
        with pytest.raises(BodyOverLimit, match="over the 10000 bytes"):
            await client.request("PUT", "/file", body=StreamedBody(chunks(), None, limit=10_000))
        await ended.wait()
        assert client.open_connections == 0
    # At most the ten chunks within the limit (what a reset drops, it drops),
    # and never the last chunk that would end the body.
    within = (b"3e8\r\n" + b"x" * 1000 + b"\r\n") * 10
    assert within.startswith(received)
    assert b"0\r\n\r\n" not in received
    assert pulled == 11  # the body was read no further than the chunk that crossed


async def test_a_body_at_its_limit_is_sent_whole(upstream: Upstream) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 1000

    body = StreamedBody(chunks(), None, limit=10_000)
    async with await client_for(upstream).request("POST", "/up", body=body) as response:
        assert response.status == 200
    _, _, headers, received = upstream.requests[-1]
    assert (headers["Transfer-Encoding"], received) == ("chunked", b"y" * 10_000)


async def test_response_body_streams_before_the_upstream_finishes(upstream: Upstream) -> None:
    client = client_for(upstream)
    response = await client.request("GET", "/stream-out")
    try:
        assert response.headers["X-Part"] == "1"
        assert await response.read_chunk() == b"first,"
        # Only now may the upstream send the rest.
        upstream.release.set()
        assert await response.read(100) == b"second"
        assert await response.read_chunk() == b""
    finally:
        response.release()
    assert client.idle_connections == 1


async def test_connection_close_is_not_reused(upstream: Upstream) -> None:
    client = client_for(upstream)
    assert await get_text(client, "/close") == (200, b"bye")
    assert client.open_connections == 0
    await get_text(client, "/a")
    assert len(upstream.connections) == 2


async def test_a_body_left_unread_closes_the_connection(upstream: Upstream) -> None:
    client = client_for(upstream)
    response = await client.request("GET", "/stream-out")
    response.release()  # not read to the end: the connection is out of step
    assert client.open_connections == 0
    upstream.release.set()
    assert (await get_text(client, "/a"))[0] == 200
    assert len(upstream.connections) == 2


async def test_expired_keep_alive_connections_are_not_reused(upstream: Upstream) -> None:
    client = make_client(upstream.port, keepalive_timeout=1e-9)
    await get_text(client, "/a")
    await get_text(client, "/a")
    assert len(upstream.connections) == 2


async def test_head_response_has_no_body_and_keeps_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_head(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(handler) as port:
        client = make_client(port)
        async with await client.request("HEAD", "/x") as response:
            assert response.content_length == 12345
            assert await response.read_chunk() == b""
        assert client.idle_connections == 1
        assert await get_text(client, "/y") == (200, b"ok")
        assert client.open_connections == 1


async def test_chunked_response_is_decoded() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    async with raw_server(answering(chunked)) as port:
        client = make_client(port)
        async with await client.request("GET", "/") as response:
            assert response.content_length is None
            assert await response.read(100) == b"hello world"
        assert client.idle_connections == 1


async def test_body_until_close_ends_at_eof() -> None:
    async with raw_server(answering(b"HTTP/1.0 200 OK\r\n\r\nall of it", then_close=True)) as port:
        client = make_client(port)
        assert await get_text(client, "/") == (200, b"all of it")
        assert client.open_connections == 0


async def test_partial_body_raises_after_the_bytes_that_came() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
    async with raw_server(answering(cut, then_close=True)) as port:
        client = make_client(port)
        response = await client.request("GET", "/")
        assert response.status == 200
        assert await response.read_chunk() == b"0123456789"
        with pytest.raises(BodyCutShort):
            await response.read_chunk()
        response.release()
        assert client.open_connections == 0


async def test_reset_before_answering_is_disconnected() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.transport.abort()  # RST, no answer

    async with raw_server(handler) as port:
        client = make_client(port)
        with pytest.raises(Disconnected):
            await client.request("DELETE", "/x")
        assert client.open_connections == 0


async def test_stale_pooled_connection_is_retried_once_for_idempotent_methods() -> None:
    """The server drops a kept connection as the next request arrives on it."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        served = 0
        while True:
            try:
                await read_head(reader)
            except asyncio.IncompleteReadError:
                return
            if served == 1:
                writer.transport.abort()
                return
            served += 1
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with raw_server(handler) as port:
        client = make_client(port)
        for method in ("DELETE", "DELETE"):
            async with await client.request(method, "/x") as response:
                assert response.status == 204
        assert connections == 2  # the second DELETE went again, on a new connection
        # A POST may have done something: it is not sent twice.
        with pytest.raises(Disconnected):
            await client.request("POST", "/x", body=b"{}")
        assert connections == 2


async def test_slow_but_live_body_is_not_cut_by_the_idle_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        for digit in b"0123456789":
            await asyncio.sleep(0.05)  # the upstream's pace, not a synchronisation
            writer.write(bytes([digit]))
            await writer.drain()
        await reader.read()

    async with raw_server(handler) as port:
        # Ten bytes 50 ms apart: 0.5 s in all, never 0.2 s without one.
        client = make_client(port, read_timeout=0.2)
        assert await get_text(client, "/") == (200, b"0123456789")


async def test_stalled_body_times_out() -> None:
    stalled = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"
    async with raw_server(answering(stalled)) as port:
        client = make_client(port, read_timeout=0.2)
        response = await client.request("GET", "/")
        assert await response.read_chunk() == b"01234"
        with pytest.raises(UpstreamTimeout):
            await response.read_chunk()
        response.release()
        assert client.open_connections == 0


async def test_no_answer_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(handler) as port:
        client = make_client(port, read_timeout=0.2)
        with pytest.raises(UpstreamTimeout):
            await client.request("GET", "/")
        assert client.open_connections == 0


async def test_a_kept_connections_next_request_still_times_out() -> None:
    """The idle timer outlives a request on a kept connection: it must still
    guard the next one, which this server never answers."""
    answered = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        await read_head(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        answered += 1
        await reader.read()

    async with raw_server(handler) as port:
        client = make_client(port, read_timeout=0.2)
        async with await client.request("GET", "/") as response:
            assert response.status == 204
        assert client.idle_connections == 1
        with pytest.raises(UpstreamTimeout):
            await client.request("GET", "/")
        assert answered == 1
        assert client.open_connections == 0


async def test_interim_responses_are_skipped() -> None:
    interim_then_final = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 4\r\n\r\ndone"
    )
    async with raw_server(answering(interim_then_final)) as port:
        client = make_client(port)
        async with await client.request("GET", "/") as response:
            assert response.status == 201
            assert response.headers["X-Final"] == "yes"
            assert "Link" not in response.headers
            assert await response.read(10) == b"done"


async def test_expect_continue_sends_the_body_after_100() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        seen.append(head)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        body = await reader.readexactly(5)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\n" + body)
        await writer.drain()
        await reader.read()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"image"

    async with raw_server(handler) as port:
        client = make_client(port)
        body = StreamedBody(chunks(), 5)
        async with await client.request(
            "PUT", "/file", body=body, expect_continue=True
        ) as response:
            assert response.status == 201
            assert await response.read(10) == b"image"
        assert b"\r\nExpect: 100-continue\r\n" in seen[0]
        assert client.idle_connections == 1


async def test_expect_continue_refused_sends_no_body() -> None:
    received = bytearray()
    done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\n\r\nbig")
        await writer.drain()
        received.extend(await reader.read())
        done.set()

    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield b"x" * 10

    async with raw_server(handler) as port:
        client = make_client(port)
        body = StreamedBody(chunks(), 10)
        async with await client.request(
            "PUT", "/file", body=body, expect_continue=True
        ) as response:
            assert response.status == 413
            assert await response.read(10) == b"big"
        # The body was never sent, so the connection cannot be reused.
        assert client.open_connections == 0
        await done.wait()
        assert pulled == 0
        assert bytes(received) == b""


async def test_header_with_a_line_break_is_refused_before_sending() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("nothing may be sent")

    async with raw_server(handler) as port:
        client = make_client(port)
        with pytest.raises(ValueError, match="line break"):
            await client.request("GET", "/", {"X-Project-Id": "a\r\nX-Roles: admin"})
        assert client.open_connections == 0


async def test_oversized_response_head_is_refused() -> None:
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    async with raw_server(answering(big)) as port:
        client = make_client(port)
        with pytest.raises(UpstreamError, match="head over"):
            await client.request("GET", "/")
        assert client.open_connections == 0


async def test_garbage_is_a_protocol_error() -> None:
    async with raw_server(answering(b"SSH-2.0-OpenSSH\r\n")) as port:
        client = make_client(port)
        with pytest.raises(UpstreamError, match="invalid HTTP response") as caught:
            await client.request("GET", "/")
        assert caught.value.kind == "protocol"


async def test_a_slow_reader_pauses_the_upstream_instead_of_buffering() -> None:
    """16 MiB offered at once, read slowly: the client never holds much more than its mark."""
    size = 16 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        await reader.read()

    async with raw_server(handler) as port:
        client = make_client(port)
        largest = received = 0
        async with await client.request("GET", "/") as response:
            while chunk := await response.read_chunk():
                largest = max(largest, len(chunk))
                received += len(chunk)
                await asyncio.sleep(0.001)  # a slow reader's pace, not a synchronisation
        assert received == size
        # Without pausing the socket, what arrived between reads would pile up
        # (megabytes per chunk); with it, about the high-water mark at most.
        assert largest <= 512 * 1024
        assert client.idle_connections == 1
