"""A lean HTTP/1.1 client for one origin: a keep-alive pool on asyncio protocols.

On the proxy's hot path aiohttp's ClientSession cost about 120 CPU-µs a call;
this client makes the same call for a fraction of that by doing less: one
origin, no cookies, redirects or decompression, and responses parsed by
httptools (llhttp, Node's C parser).

What it promises:

- one request at a time on a connection, never pipelined;
- a connection goes back to the pool only when its request was sent whole,
  its response was read to the end, and both sides allow keep-alive; after an
  error, a timeout, a body left unread or ``Connection: close`` it is closed;
- at most ``max_connections`` open; callers beyond that wait, first come
  first served, within the connect timeout;
- timeouts: *connect* (a free slot, then the TCP/TLS handshake), *idle* (no
  progress either way for that long while a request is in flight; every
  byte sent, received or consumed re-arms it, so a slow but live stream is
  never cut), *keep-alive* (a pooled connection idle longer is not reused);
- bodies streamed both ways: a request body from any async iterable of
  bytes, framed by its length or chunked, with ``Expect: 100-continue`` on
  request, counted as it flows: cut past its limit, and, when it has a
  meter, let through only as far as the meter allows (either way the
  connection is reset, no last chunk sent); a response body handed out as
  it arrives, the socket paused while the reader is behind.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

# Response heads larger than this are refused: llhttp sets no bound itself.
MAX_HEAD_BYTES: Final = 64 * 1024
# Response body buffered above HIGH pauses the socket until the reader has
# taken it below LOW.
_HIGH_WATER: Final = 256 * 1024
_LOW_WATER: Final = 64 * 1024
# How long to wait for 100 Continue before sending the body anyway, as
# RFC 9110 §10.1.1 lets a client do with a server that ignores Expect.
CONTINUE_WAIT: Final = 1.0
# Safe to send again when a pooled connection turns out to have been closed
# by the server before it read anything (RFC 9110 §9.2.2).
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
# Methods whose requests have a body by meaning: an empty one is still framed.
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


class UpstreamError(Exception):
    """The upstream could not be reached, or did not answer as HTTP/1.1 says."""

    kind = "protocol"


class ConnectError(UpstreamError):
    kind = "connect"


class TlsError(ConnectError):
    """The TLS handshake failed: a certificate not trusted, expired, or not for
    this host, or ours refused by a server that asks for one."""

    kind = "tls"


def tls_failure(exc: ssl.SSLError, where: str) -> TlsError:
    # verify_message says why a certificate was refused ("certificate has
    # expired"); reason, what else failed ("TLSV13_ALERT_CERTIFICATE_REQUIRED").
    refused = getattr(exc, "verify_message", None)
    if refused:
        return TlsError(f"TLS with {where} failed: certificate verify failed: {refused}")
    why = str(exc.reason or exc).replace("_", " ").lower()
    return TlsError(f"TLS with {where} failed: {why}")


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class Disconnected(UpstreamError):
    kind = "disconnected"


class BodyCutShort(Disconnected):
    """The response body ended before its framing said it would."""


class RequestBodyError(Exception):
    """Reading the body to send failed: the sender went away or sent too little."""


class BodyOverLimit(RequestBodyError):
    """The body grew past its ``limit``: the request was cut before its end."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over the {limit} bytes it may hold")
        self.limit = limit


class BodyRefused(RequestBodyError):
    """The body's meter let no more of it through: the request was cut before
    its end. Why is the exception's cause."""


class BodyMeter(Protocol):
    """Lets a streamed body through as far as it allows, told each byte sent."""

    # How far the body may go without asking, and how far it went.
    reserved: int
    moved: int

    async def cover(self, through: int) -> None:
        """Let the first ``through`` bytes through, or raise."""
        ...


class _StaleConnection(Disconnected):
    """A pooled connection was closed by the server before it answered anything."""


class StreamedBody:
    """A request body read as it is sent; ``length`` None means chunked.

    ``limit`` is the most it may hold, counted as it flows: the chunk that
    crosses it is never sent, and the connection is reset rather than the
    body ended (no last chunk), so the upstream never sees a whole request.
    A ``meter`` is asked before the bytes past what it covers are sent, and
    told how many were sent.
    """

    __slots__ = ("chunks", "length", "limit", "meter")

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        length: int | None,
        limit: int | None = None,
        meter: BodyMeter | None = None,
    ) -> None:
        self.chunks = chunks
        self.length = length
        self.limit = limit
        self.meter = meter


RequestBody = bytes | StreamedBody


class UpstreamResponse:
    """A response whose head has arrived; its body is read from the connection.

    ``release()`` must be called once done with it (a ``finally``, or ``async
    with``): it returns the connection to the pool when that is safe.
    """

    __slots__ = ("_connection", "content_length", "headers", "reason", "status")

    def __init__(
        self,
        connection: _Connection,
        status: int,
        reason: str,
        headers: CIMultiDict[str],
        content_length: int | None,
    ) -> None:
        self._connection = connection
        self.status = status
        self.reason = reason
        self.headers = headers
        # The body's declared length; None when chunked or left to the end
        # of the connection.
        self.content_length = content_length

    def read_chunk(self) -> Coroutine[Any, Any, bytes]:
        """The body bytes that have arrived (waiting for some); b"" at its end."""
        # The connection's coroutine, not one awaiting it: one frame fewer.
        return self._connection.read_chunk()

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body; a longer body is left unread."""
        parts: list[bytes] = []
        size = 0
        while size < limit and (chunk := await self.read_chunk()):
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:limit]

    def release(self) -> None:
        self._connection.release()

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request in flight at most, its response parsed."""

    def __init__(self, client: HttpClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        # Has carried a request already, so the server may have closed it
        # while it sat in the pool.
        self.used = False
        self.idle_since = 0.0
        self.lost = False
        self._dropped = False
        self._in_flight = False
        # Per request.
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._continue: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._head_only = False
        self._received = False
        self._interim = False
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._keep_alive = False
        self._until_close = False
        self._answered = False
        self._done = False
        self._sent_whole = False
        self._exc: BaseException | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._activity = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are one.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self._in_flight and self._exc is None:
            if isinstance(exc, ssl.SSLError) and not self._answered:
                # TLS 1.3: a server that refuses our certificate says so
                # after the handshake, on the first read.
                self._fail(tls_failure(exc, f"{self._client.host}:{self._client.port}"))
            elif not self._answered:
                if self.used and not self._received:
                    self._fail(_StaleConnection("the pooled connection was closed"))
                else:
                    self._fail(Disconnected("the connection closed before the response"))
            elif not self._done:
                if self._until_close and exc is None:
                    # A body framed by the end of the connection has ended.
                    self._done = True
                    self._wake()
                else:
                    self._fail(BodyCutShort("the connection closed mid-body"))
        self._drop()

    def data_received(self, data: bytes) -> None:
        self._activity = self._loop.time()
        parser = self._parser
        if parser is None:
            # Bytes nobody asked for: the connection is out of step.
            self._fail(UpstreamError("unexpected bytes on an idle connection"))
            return
        self._received = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, UpstreamError) else None
            self._fail(cause or UpstreamError(f"invalid HTTP response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost settles the rest

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise UpstreamError(f"response head over {MAX_HEAD_BYTES} bytes")
        # As aiohttp decodes headers, so that they relay byte for byte.
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim (100 Continue, 103 Early Hints): the final answer follows.
            self._interim = True
            self._headers = []
            self._head_bytes = 0
            if status == 100 and self._continue is not None and not self._continue.done():
                self._continue.set_result(None)
            return
        self._keep_alive = self._parser.should_keep_alive()
        headers = CIMultiDict(self._headers)
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        length = headers.get("Content-Length")
        self._until_close = length is None and not chunked
        self._answered = True
        if self._head_only:
            # A HEAD response has no body whatever its Content-Length says.
            self._done = True
            self._parser = None
        if self._continue is not None and not self._continue.done():
            # A final answer before 100 Continue: the body is not wanted.
            self._continue.set_result(None)
        assert self._head is not None
        if not self._head.done():
            reason = self._reason.decode("latin-1")
            declared = None if chunked or length is None or not length.isdigit() else int(length)
            self._head.set_result(UpstreamResponse(self, status, reason, headers, declared))

    def on_body(self, body: bytes) -> None:
        if self._done:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused:
            assert self.transport is not None
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._done = True
        self._wake()

    # The request

    async def exchange(
        self, head: bytes, body: RequestBody | None, head_only: bool, expect_continue: bool
    ) -> UpstreamResponse:
        assert self.transport is not None
        loop = self._loop
        self._begin(head_only)
        head_future: asyncio.Future[UpstreamResponse] = loop.create_future()
        self._head = head_future
        self._activity = loop.time()
        if self._timer is None:
            # Left armed between requests: it re-arms itself for the last
            # activity when it fires, so a request pays for no timer of its own.
            self._timer = loop.call_at(self._activity + self._client.read_timeout, self._check_idle)
        try:
            if body is None:
                self.transport.write(head)
                self._sent_whole = True
            elif isinstance(body, bytes) and not expect_continue:
                self.transport.write(head + body)
                self._sent_whole = True
            else:
                self.transport.write(head)
                if expect_continue:
                    self._continue = loop.create_future()
                self._sender = loop.create_task(self._send(body))
            return await head_future
        except BaseException:
            self._in_flight = False
            self._stop_sending()
            self._drop()
            raise

    def _begin(self, head_only: bool) -> None:
        self._in_flight = True
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._received = self._interim = self._answered = self._done = False
        self._keep_alive = self._until_close = self._sent_whole = False
        self._reason = b""
        self._headers = []
        self._head_bytes = 0
        self._exc = None
        self._continue = None
        self._sender = None

    async def _send(self, body: RequestBody) -> None:
        assert self.transport is not None
        try:
            if self._continue is not None:
                try:
                    async with asyncio.timeout(CONTINUE_WAIT):
                        await self._continue
                except TimeoutError:
                    pass  # the server ignores Expect; send the body all the same
                if self._answered or self.lost:
                    return  # answered already: the body is not wanted
            if isinstance(body, bytes):
                self.transport.write(body)
                self._sent_whole = True
            else:
                self._sent_whole = await self._send_stream(body)
        except RequestBodyError as exc:
            self._fail(exc)
        except Exception as exc:  # a transport failing under us, say
            self._fail(UpstreamError(f"sending the request body failed: {exc!r}"))

    async def _send_stream(self, body: StreamedBody) -> bool:
        """Send the body; False when the connection failed under it first."""
        assert self.transport is not None
        chunked = body.length is None
        # The most it may carry: its declared length or its limit, the lower.
        bounds = [bound for bound in (body.length, body.limit) if bound is not None]
        most = min(bounds) if bounds else None
        meter = body.meter
        sent = 0
        chunks = aiter(body.chunks)
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except Exception as exc:
                # The class only: a parser's message quotes the sender's bytes.
                raise RequestBodyError(
                    f"reading the request body failed ({type(exc).__name__})"
                ) from exc
            if self.lost or self._exc is not None:
                return False
            if not chunk:
                continue
            sent += len(chunk)
            if most is not None and sent > most:
                if body.limit is not None and sent > body.limit:
                    raise BodyOverLimit(body.limit)
                raise RequestBodyError(f"the request body is over its {body.length} bytes")
            if meter is not None and sent > meter.reserved:
                try:
                    await meter.cover(sent)
                except Exception as exc:
                    # What the meter did cover still goes: the body is cut
                    # at the last byte it allowed.
                    covered = meter.reserved - (sent - len(chunk))
                    if covered > 0 and not self.lost and self._exc is None:
                        self._write_body(chunk[:covered], chunked)
                        meter.moved = meter.reserved
                    raise BodyRefused(f"the body's meter refused it at {sent} bytes") from exc
                if self.lost or self._exc is not None:
                    return False
            self._write_body(chunk, chunked)
            if meter is not None:
                meter.moved = sent
            if self._writing_paused:
                self._drain = self._loop.create_future()
                await self._drain
        if body.length is not None and sent != body.length:
            raise RequestBodyError(f"the request body ended at {sent} of {body.length} bytes")
        if self.lost or self._exc is not None:
            return False
        if chunked:
            self.transport.write(b"0\r\n\r\n")
        return True

    def _write_body(self, chunk: bytes, chunked: bool) -> None:
        assert self.transport is not None
        self._activity = self._loop.time()
        if chunked:
            self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        else:
            self.transport.write(chunk)

    def _stop_sending(self) -> None:
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()

    def _check_idle(self) -> None:
        self._timer = None
        if not self._in_flight:
            return
        deadline = self._activity + self._client.read_timeout
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_idle)
            return
        self._fail(UpstreamTimeout(f"no progress for {self._client.read_timeout:g}s"))

    # The response body

    async def read_chunk(self) -> bytes:
        while True:
            if self._body:
                data = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
                self._body.clear()
                self._buffered = 0
                if self._reading_paused and not self.lost:
                    assert self.transport is not None
                    self._reading_paused = False
                    self.transport.resume_reading()
                self._activity = self._loop.time()
                return data
            if self._done:
                return b""
            if self._exc is not None:
                raise self._exc
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def release(self) -> None:
        if not self._in_flight:
            return
        self._in_flight = False
        self._stop_sending()
        reusable = (
            self._done
            and self._sent_whole
            and self._keep_alive
            and self._exc is None
            and not self.lost
        )
        self._parser = None
        self._body.clear()
        self._buffered = 0
        self.used = True
        if reusable:
            if self._reading_paused:
                assert self.transport is not None
                self._reading_paused = False
                self.transport.resume_reading()
            self._client._return(self)
        else:
            self._drop()

    def _fail(self, exc: BaseException) -> None:
        if self._exc is None:
            self._exc = exc
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
            head.exception()  # the awaiting exchange re-raises it; no "never retrieved"
        if self._continue is not None and not self._continue.done():
            self._continue.set_result(None)
        self._wake()
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def _drop(self) -> None:
        """Close for good and give the slot back, once."""
        if self._dropped:
            return
        self._dropped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.lost:
            # Clean after a whole exchange, reset after anything else.
            if self._exc is None and self._done:
                self.transport.close()
            else:
                self.transport.abort()
        self._client._forget(self)


class HttpClient:
    """A keep-alive connection pool to one origin (``http`` or ``https`` URL)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        keepalive_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: for an https URL, what to trust and present
        (gateway.http.tls); the system's CAs when None."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if default_port else f"{host}:{self.port}"
        self._base_path = parts.path.rstrip("/")
        self._ssl = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] = _NO_HEADERS,
        body: RequestBody | None = None,
        *,
        expect_continue: bool = False,
    ) -> UpstreamResponse:
        """Send a request; the response comes back once its head has arrived.

        ``target`` is the origin-form path and query, already percent-encoded.
        """
        if self._closed:
            raise RuntimeError("the HTTP client is closed")
        head = self._head(method, target, headers, body, expect_continue and body is not None)
        retry = method in _IDEMPOTENT and not isinstance(body, StreamedBody)
        while True:
            connection = await self._acquire()
            try:
                return await connection.exchange(
                    head, body, method == "HEAD", expect_continue and body is not None
                )
            except _StaleConnection as exc:
                if not retry:
                    raise Disconnected(str(exc)) from None
                retry = False

    def _head(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: RequestBody | None,
        expect_continue: bool,
    ) -> bytes:
        if " " in target or not target.startswith("/"):
            raise ValueError(f"not an origin-form request target: {target!r}")
        lines = [f"{method} {self._base_path}{target} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        # A multidict's items() yields every value of a repeated header.
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if body is None:
            if method in _BODY_METHODS:
                lines.append("Content-Length: 0\r\n")
        elif isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif body.length is not None:
            lines.append(f"Content-Length: {body.length}\r\n")
        else:
            lines.append("Transfer-Encoding: chunked\r\n")
        if expect_continue:
            lines.append("Expect: 100-continue\r\n")
        lines.append("\r\n")
        head = "".join(lines)
        # Each piece ends its own line: one more CR or LF (a value carrying a
        # line break) would smuggle a header or a request to the backend.
        breaks = len(lines) + 1
        if head.count("\n") != breaks or head.count("\r") != breaks or "\0" in head:
            raise ValueError("a request header carries a line break or NUL")
        return head.encode("utf-8", "surrogateescape")

    async def _acquire(self) -> _Connection:
        if not self._waiters:
            connection = self._pooled()
            if connection is not None:
                return connection
            if self._open < self.max_connections:
                return await self._connect()
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self._wait_for_slot()
        except TimeoutError:
            raise UpstreamTimeout(
                f"no connection free within {self.connect_timeout:g}s "
                f"({self.max_connections} in use)"
            ) from None

    async def _wait_for_slot(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, but leaving: pass the turn on
                else:
                    self._waiters.remove(waiter)
                raise
            connection = self._pooled()
            if connection is not None:
                return connection
            if self._open < self.max_connections:
                return await self._connect()

    def _pooled(self) -> _Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.lost:
                continue
            if time.monotonic() - connection.idle_since > self.keepalive_timeout:
                connection._drop()
                continue
            return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self._open += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, loop), self.host, self.port, ssl=self._ssl
                )
        except BaseException as exc:
            self._open -= 1
            self._wake_one()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout(
                    f"connecting to {self.host}:{self.port} took over {self.connect_timeout:g}s"
                ) from None
            if isinstance(exc, ssl.SSLError):
                raise tls_failure(exc, f"{self.host}:{self.port}") from None
            if isinstance(exc, OSError):
                raise ConnectError(f"connecting to {self.host}:{self.port}: {exc}") from None
            raise
        return connection

    def _return(self, connection: _Connection) -> None:
        if self._closed:
            connection._drop()
            return
        # Not loop.time(): uvloop's is cached per loop turn, in milliseconds.
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake_one()

    def _forget(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close the idle connections now; those in use close when released."""
        self._closed = True
        while self._idle:
            self._idle.pop()._drop()
