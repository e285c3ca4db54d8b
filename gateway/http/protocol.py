"""The gateway's own HTTP/1.1 server protocol: what happens before the chain runs.

aiohttp answers a request its parser refuses (a header line too long, too
many headers, Content-Length with Transfer-Encoding, a bad chunk size, an
obs-fold, no Host) by itself, below every middleware, with a plain-text
page quoting the offending bytes and an ERROR traceback in the log that
holds the whole header line, a token included. Here those requests get the
fault envelope and a request id like every other error, and one bounded
log line that names the kind of fault, never the bytes.

The same protocol bounds what a client may hold: a request's headers must
arrive within ``listen.header_read_timeout`` of its first byte, an idle
connection closes after ``listen.keepalive_timeout``, one client address may
have at most ``listen.max_unfinished_heads_per_client`` heads part-way sent,
and at ``listen.max_connections`` open connections the one that has waited
longest for a request head is closed to make room (gateway.http.capacity);
only when every connection is inside a request is a new one answered 503
and closed at once. So slow or idle clients cannot exhaust a worker's
descriptors, nor lock other clients out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import hdrs, http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http.capacity import OldestWaiting, UnfinishedHeads
from gateway.http.faults import fault_body, fault_json
from gateway.http.request_ids import RESPONSE_HEADERS, new_request_id

log = logging.getLogger("gateway.http")


# What the client is told, by the parser's exception class: a fixed text,
# never the exception's message (which quotes the client's bytes).
_PARSE_FAULTS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "The request line or a header is too long."),
    (http_exceptions.BadHttpMethod, "The request method is malformed."),
    (http_exceptions.BadStatusLine, "The request line is malformed."),
    (http_exceptions.InvalidURLError, "The request target is malformed."),
    (http_exceptions.InvalidHeader, "A header is malformed."),
    (http_exceptions.PayloadEncodingError, "The request body's framing is malformed."),
)
_PARSE_FAULT = "The request could not be parsed."
# A flood of bad requests or slow clients logs one line per this many seconds.
_LOG_EVERY_SECONDS = 10.0


def parse_fault_message(exc: BaseException | None) -> str:
    for kind, message in _PARSE_FAULTS:
        if isinstance(exc, kind):
            return message
    return _PARSE_FAULT


def fault_bytes(status: int, reason: str, message: str, request_id: str) -> bytes:
    """A whole HTTP/1.1 response carrying a fault, for a connection with no request."""
    body = fault_json(fault_body(status, message))
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    head += [f"{name}: {request_id}" for name in RESPONSE_HEADERS]
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(head).encode() + body


class ThrottledLog:
    """Logs an event at most once per interval, saying how many it left out since."""

    def __init__(
        self,
        message: str,
        interval: float = _LOG_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.message = message
        self.interval = interval
        self._clock = clock
        self._last = -math.inf
        self._suppressed = 0

    def event(self, detail: str, request_id: str | None = None) -> None:
        now = self._clock()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        log.warning(
            "%s: %s (%d more since the last such line)",
            self.message,
            detail,
            self._suppressed,
            extra={"request_id": request_id} if request_id else None,
        )
        self._last, self._suppressed = now, 0


@dataclass
class ClientLimits:
    """What one worker allows its clients, and what it counted refusing them."""

    header_read_timeout: float
    keepalive_timeout: float
    max_connections: int
    max_unfinished_heads_per_client: int = 16
    # Plain counts for the metrics endpoint.
    parse_errors: int = 0
    header_timeouts: int = 0
    refused_connections: int = 0
    # Closed to make room: at max_connections, and over a client's heads.
    evicted_at_capacity: int = 0
    evicted_per_client: int = 0
    timeout_log: ThrottledLog = field(
        default_factory=lambda: ThrottledLog("closed connections whose headers did not arrive")
    )
    refusal_log: ThrottledLog = field(
        default_factory=lambda: ThrottledLog("refused connections over listen.max_connections")
    )
    eviction_log: ThrottledLog = field(
        default_factory=lambda: ThrottledLog(
            "closed the connections waiting longest for a request head, to make room"
        )
    )
    client_heads_log: ThrottledLog = field(
        default_factory=lambda: ThrottledLog(
            "closed a client's oldest unfinished request heads"
            " (over listen.max_unfinished_heads_per_client)"
        )
    )


class GatewayRequestHandler(RequestHandler):
    """aiohttp's protocol, with our faults for parser errors and a header deadline."""

    def __init__(
        self,
        manager: web.Server,
        *,
        limits: ClientLimits,
        heads: UnfinishedHeads[GatewayRequestHandler],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._heads = heads
        # Armed while a request head is part-way in (and counted in _heads).
        self._header_deadline: asyncio.TimerHandle | None = None
        # The peer's address, read when a head first arrives in pieces.
        self._client: str | None = None

    def data_received(self, data: bytes) -> None:
        queued = len(self._messages)
        super().data_received(data)
        self._fail_body_in_progress(queued)
        # Waiting for a request (not handling one) and some of it came but
        # not all of its head: the head now has a deadline. Under uvloop the
        # first bytes can come before start() waits for them: no request
        # parsed yet is waiting too.
        waiting = not self._messages and (self._waiter is not None or not self._request_count)
        if not waiting:
            self._cancel_header_deadline()
        elif data and self._header_deadline is None:
            self._head_begun()

    def _head_begun(self) -> None:
        """Part of a head came, not all of it: it has a deadline, and counts
        against its client's unfinished heads."""
        self._header_deadline = self._loop.call_later(
            self._limits.header_read_timeout, self._header_deadline_passed
        )
        if self._client is None:
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self._client = str(peer[0]) if isinstance(peer, tuple) else ""
        over = self._heads.add(self._client, self)
        if over is not None:
            self._limits.evicted_per_client += 1
            self._limits.client_heads_log.event(
                f"{self._client or 'a local socket'} had"
                f" {self._limits.max_unfinished_heads_per_client}"
            )
            over.evict()

    def waiting_since(self) -> float | None:
        """When this connection began waiting for a request head (accepted,
        or its last response sent): aiohttp's keep-alive clock runs from then."""
        waiter = self._waiter
        if waiter is None or waiter.done() or self._messages or self.transport is None:
            return None
        return self._next_keepalive_close_time - self._keepalive_timeout

    def evict(self) -> None:
        """Closed to make room: a 503 fault if part of a head came, silence
        on a connection that has not begun one."""
        if self.transport is None:
            return
        if self._header_deadline is not None:
            self.transport.write(
                fault_bytes(
                    503, "Service Unavailable", "The gateway is at capacity.", new_request_id()
                )
            )
        self.force_close()

    def _fail_body_in_progress(self, queued: int) -> None:
        """A body whose framing broke while the chain reads it (a bad chunk
        size): aiohttp queues the parse error as a next request and leaves
        the reader waiting forever; hand the error to the reader instead."""
        request = self._current_request
        if request is None or len(self._messages) <= queued:
            return
        error = getattr(self._messages[-1][0], "exc", None)
        if isinstance(error, http_exceptions.HttpProcessingError):
            self._messages.pop()
            request.content.set_exception(error)

    def force_close(self) -> None:
        self._cancel_header_deadline()
        super().force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
            self._heads.remove(self._client or "", self)

    def _header_deadline_passed(self) -> None:
        self._cancel_header_deadline()
        if self.transport is None or self._messages or self._waiter is None:
            return
        self._limits.header_timeouts += 1
        request_id = new_request_id()
        self._limits.timeout_log.event(
            f"no complete request head within {self._limits.header_read_timeout:g}s", request_id
        )
        self.transport.write(
            fault_bytes(408, "Request Timeout", "The request's headers took too long.", request_id)
        )
        self.force_close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        request_id = new_request_id()
        if isinstance(exc, ConnectionError):
            # The client closed its side while aiohttp wrote to it (a
            # 100 Continue, say): nothing is wrong here.
            log.info("client went away before the chain ran", extra={"request_id": request_id})
            text = "The client went away."
        elif status == 500:
            # Not the client's doing: a bug below the chain, with its traceback.
            log.error("error outside the chain", exc_info=exc, extra={"request_id": request_id})
            text = "The gateway failed to handle the request."
        else:
            self._limits.parse_errors += 1
            text = parse_fault_message(exc)
            log.info(
                "refused an unparseable request from %s: %s (%s)",
                request.remote,
                text,
                type(exc).__name__,
                extra={"request_id": request_id},
            )
        if request.writer.output_size > 0:
            raise ConnectionError("the response had begun; the connection is cut instead")
        return self._fault_response(status, text, request_id)

    @staticmethod
    def _fault_response(status: int, message: str, request_id: str) -> web.Response:
        response = web.Response(
            status=status,
            body=fault_json(fault_body(status, message)),
            content_type="application/json",
            headers={name: request_id for name in RESPONSE_HEADERS},
        )
        response.force_close()
        return response

    async def finish_response(
        self, request: Any, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # Raised by aiohttp before the chain ran (an Expect it does not
            # know is a 417 whose text quotes the header): our envelope instead.
            resp = self._fault_response(resp.status, resp.reason, new_request_id())
        return await super().finish_response(request, resp, start_time)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # aiohttp logs a request body that breaks its framing after the
        # handler answered (while draining it) as an unhandled exception,
        # whose message quotes the client's bytes.
        exc = kwargs.get("exc_info")
        if isinstance(exc, http_exceptions.HttpProcessingError):
            self._limits.parse_errors += 1
            log.info("dropped a connection: %s (%s)", parse_fault_message(exc), type(exc).__name__)
            return
        super().log_exception(*args, **kwargs)


class _Refusal(asyncio.Protocol):
    """A connection over the cap: one 503 fault, then closed, nothing read."""

    def __init__(self, limits: ClientLimits) -> None:
        self._limits = limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports write like asyncio.Transport without deriving
        # from it (an isinstance check here failed on every refusal).
        writer = cast(asyncio.WriteTransport, transport)
        request_id = new_request_id()
        self._limits.refused_connections += 1
        self._limits.refusal_log.event(
            f"{self._limits.max_connections} connection(s) open, each inside a request",
            request_id,
        )
        writer.write(
            fault_bytes(503, "Service Unavailable", "The gateway is at capacity.", request_id)
        )
        writer.close()


def _known_expectations_only(message: Any) -> Any:
    """The request without an Expect other than 100-continue.

    aiohttp answers any other expectation itself, before the chain, with a
    417 whose text quotes the header (a 500 when it is not UTF-8). RFC 9110
    §10.1.1 lets a server ignore an expectation it does not know.
    """
    expect = message.headers.get(hdrs.EXPECT)
    if expect is None or expect.strip().lower() == "100-continue":
        return message
    headers = CIMultiDict(message.headers)
    headers.popall(hdrs.EXPECT)
    raw = tuple((n, v) for n, v in message.raw_headers if n.lower() != b"expect")
    return message._replace(headers=CIMultiDictProxy(headers), raw_headers=raw)


# The server's (a BaseRequest) or an app's handler (a Request): either serves.
AppHandler = Callable[[Any], Awaitable[web.StreamResponse]]


class _Target:
    """A handler requests go to, and how many are in it now: counted as a plain
    integer on every request, with a future only while a drain waits for it."""

    __slots__ = ("handler", "idle", "in_flight")

    def __init__(self, handler: AppHandler) -> None:
        self.handler = handler
        self.in_flight = 0
        self.idle: asyncio.Future[None] | None = None


class GatewayServer(web.Server):
    """aiohttp's Server, making GatewayRequestHandlers, refusing past the cap.

    Requests go to the current app's handler, looked up per request, so that
    a reload can put a new app behind the same listening socket: no
    connection is refused or reset while the old app's requests finish.
    """

    def __init__(self, plain: web.Server, limits: ClientLimits) -> None:
        make_request = plain.request_factory

        def request_factory(message: Any, *args: Any) -> web.BaseRequest:
            return make_request(_known_expectations_only(message), *args)

        self._target = _Target(plain.request_handler)
        # Those a switch replaced, while requests may still be in them.
        self._replaced: list[_Target] = []
        self._heads: UnfinishedHeads[GatewayRequestHandler] = UnfinishedHeads(
            limits.max_unfinished_heads_per_client
        )
        self._oldest_waiting: OldestWaiting[GatewayRequestHandler] = OldestWaiting()
        super().__init__(
            self._dispatch,
            request_factory=request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        self.limits = limits

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        target = self._target
        target.in_flight += 1
        try:
            return await target.handler(request)
        finally:
            target.in_flight -= 1
            if not target.in_flight and target.idle is not None:
                target.idle.set_result(None)
                target.idle = None

    @property
    def in_flight(self) -> int:
        """Requests being handled now, by whichever app."""
        return self._target.in_flight + sum(t.in_flight for t in self._replaced)

    def switch(self, handler: AppHandler) -> _Target:
        """Send every request from now on to ``handler``; return what it replaced."""
        self._replaced = [t for t in self._replaced if t.in_flight]
        old, self._target = self._target, _Target(handler)
        self._replaced.append(old)
        return old

    async def drained(self, old: _Target, grace: float) -> bool:
        """Wait until no request is in ``old`` (what ``switch`` returned); False
        if ``grace`` seconds passed first."""
        if not old.in_flight:
            return True
        if old.idle is None:
            old.idle = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(old.idle)
        except TimeoutError:
            return False
        return True

    def __call__(self) -> Any:
        if len(self._connections) >= self.limits.max_connections and not self._make_room():
            return _Refusal(self.limits)
        return GatewayRequestHandler(
            self, limits=self.limits, heads=self._heads, loop=self._loop, **self._kwargs
        )

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request head, if any waits."""
        handlers = (h for h in self._connections if isinstance(h, GatewayRequestHandler))
        oldest = self._oldest_waiting.pop(handlers, self._loop.time())
        if oldest is None:
            return False
        self.limits.evicted_at_capacity += 1
        self.limits.eviction_log.event(f"{self.limits.max_connections} connection(s) open")
        oldest.evict()
        return True


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server is a GatewayServer."""

    def __init__(self, app: web.Application, limits: ClientLimits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        return GatewayServer(await super()._make_server(), self.limits)

    async def swap(self, app: web.Application, drain_timeout: float) -> None:
        """Serve ``app`` from now on, on the same sockets; the old app finishes
        its requests (up to ``drain_timeout``) and is then shut down."""
        server = self.server
        assert isinstance(server, GatewayServer), "set the runner up first"
        # What AppRunner does for its app at set-up.
        app._set_loop(asyncio.get_running_loop())
        app.on_startup.freeze()
        await app.startup()
        app.freeze()
        old_app, old_target = self._app, server.switch(app._handle)
        self._app = app
        if not await server.drained(old_target, drain_timeout):
            log.warning(
                "requests of the previous configuration still running after %gs;"
                " shutting it down anyway",
                drain_timeout,
            )
        await old_app.shutdown()
        await old_app.cleanup()
