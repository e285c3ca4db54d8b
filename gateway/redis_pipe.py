"""One pipelined connection to one Redis node: the limiter's path to Redis.

redis-py spends more CPU on a call than the limiter's script costs Redis to
run: per command it takes a pooled connection and checks its health, goes
through its retry and observability layers, packs the arguments generically
and hands the connection back (about 130 CPU-µs a call here, against about
40 for this module; bench/limiter.py). The limiter sends one command per
loop turn to one node, so it speaks RESP itself over an asyncio protocol:
commands are written as they come, several may be in flight on the one
connection, and replies, parsed by hiredis (the C parser redis-py uses
too), go to their callers in the order the commands were sent.

What the connection needs to be set up comes from redis-py's public pieces
(gateway/redis_connect.py): the URL's parts, the TLS context, and
for Sentinel, where the master is.

A connection is not used again once a caller stopped waiting for its reply
(a timeout) or anything went wrong on it, so a reply can never reach the
wrong caller and a failed-over or silent node is left at once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.exceptions import (
    AuthenticationError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)

# What operators see in CLIENT LIST for the limiter's connections.
CLIENT_NAME = "image-gateway-limiter"


@dataclass(frozen=True, slots=True)
class RedisNode:
    """Where a Redis node is and how to log in to it."""

    host: str = "127.0.0.1"
    port: int = 6379
    # A Unix socket's path; host and port are then unused.
    path: str | None = None
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0


# Finds the node to talk to; asked again for every new connection, so that
# Sentinel's answer after a failover is used.
NodeLocator = Callable[[], Awaitable[RedisNode]]


def pack_command(*args: str | int | bytes) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def _error(reply: hiredis.ReplyError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("READONLY"):
        return ReadOnlyError(message)
    return ResponseError(message)


class _RespProtocol(asyncio.Protocol):
    """Replies matched to their commands in order, over one transport."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.is_open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        # Kept: asking for the running loop is a system call on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self.is_open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        lost = RedisConnectionError(f"connection to redis lost: {exc or 'closed by the server'}")
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(lost)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not self._waiting:
                    raise hiredis.ProtocolError("a reply nothing was waiting for")
                future = self._waiting.popleft()
                if future.done():
                    continue  # its caller stopped waiting; the connection is closing
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_error(reply))
                else:
                    future.set_result(reply)
        except hiredis.ProtocolError:
            self.close()

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        assert self._transport is not None
        assert self._loop is not None
        future = self._loop.create_future()
        self._waiting.append(future)
        self._transport.write(packed)
        return future

    def close(self) -> None:
        if self._transport is not None:
            self.is_open = False
            self._transport.abort()


# One connection, for a caller of RedisPipe.send_now to close.
RespConnection = _RespProtocol


class RedisPipe:
    """Commands to the node the locator names, over one connection at a time."""

    def __init__(self, locate: NodeLocator) -> None:
        self._locate = locate
        self._connection: _RespProtocol | None = None
        self._opening = asyncio.Lock()

    async def call(self, packed: bytes) -> Any:
        """The reply to one packed command (pack_command); an error reply is raised.

        Callers bound it with their own timeout.
        """
        connection = self._connection
        if connection is not None and connection.is_open:
            try:
                return await self._exchange(connection, packed)
            except (RedisConnectionError, ReadOnlyError):
                # A kept connection can go stale without a word: closed by a
                # node that restarted, or to a master Sentinel has demoted
                # (which refused the command before it wrote anything). Once
                # more, on a fresh connection to wherever the node is now.
                pass
        return await self._exchange(await self._open(), packed)

    def send_now(self, packed: bytes) -> tuple[_RespProtocol, asyncio.Future[Any]] | None:
        """One packed command written now on the open connection, with the
        future of its reply; None when none is open (``call`` opens one).

        The caller owns what ``call`` would do: close the connection if it
        stops waiting, and try again on a fresh one after a connection error
        or a read-only reply."""
        connection = self._connection
        if connection is None or not connection.is_open:
            return None
        return connection, connection.send(packed)

    async def _exchange(self, connection: _RespProtocol, packed: bytes) -> Any:
        try:
            return await connection.send(packed)
        except ReadOnlyError:
            # A master that Sentinel demoted: the next connection asks again.
            connection.close()
            raise
        except asyncio.CancelledError:
            connection.close()
            raise

    async def _open(self) -> _RespProtocol:
        async with self._opening:
            connection = self._connection
            if connection is not None and connection.is_open:
                return connection  # another caller opened it meanwhile
            if connection is not None:
                connection.close()
            self._connection = None
            node = await self._locate()
            connection = await _connect(node)
            self._connection = connection
            return connection

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def _connect(node: RedisNode) -> _RespProtocol:
    loop = asyncio.get_running_loop()
    if node.path is not None:
        _, connection = await loop.create_unix_connection(_RespProtocol, node.path)
    else:
        _, connection = await loop.create_connection(
            _RespProtocol,
            node.host,
            node.port,
            ssl=node.tls,
            server_hostname=node.host if node.tls is not None else None,
        )
    try:
        await _log_in(connection, node)
    except BaseException:
        connection.close()
        raise
    return connection


async def _log_in(connection: _RespProtocol, node: RedisNode) -> None:
    # Sent together, answered in order: one round trip.
    login = None
    if node.password is not None:
        credentials = (node.password,) if node.username is None else (node.username, node.password)
        login = connection.send(pack_command("AUTH", *credentials))
    chosen = connection.send(pack_command("SELECT", node.db)) if node.db else None
    named = connection.send(pack_command("CLIENT", "SETNAME", CLIENT_NAME))
    if login is not None:
        try:
            await login
        except ResponseError as exc:
            raise AuthenticationError(f"redis refused the credentials: {exc}") from None
    try:
        if chosen is not None:
            await chosen
        await named
    except ResponseError as exc:
        raise RedisConnectionError(f"redis refused the connection's set-up: {exc}") from None
