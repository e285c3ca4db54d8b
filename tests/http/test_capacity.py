"""A full worker gives way gracefully, on asyncio's loop and uvloop alike.

Served as ``run`` serves it (the gateway's own protocol on a real port).
Slow clients are real sockets bound to their own loopback addresses
(127.0.0.0/8 is all loopback on Linux), so that one host and many hosts can
be told apart from the legitimate client on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import GATEWAY
from gateway.demo_backend.image_store import add_image
from gateway.http.capacity import RESCAN_AFTER_EMPTY, OldestWaiting, UnfinishedHeads
from gateway.http.protocol import ClientLimits, ThrottledLog
from tests.security.conftest import LiveGateway, exchange, parse_response, serve_gateway
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import until

__all__ = ["serve_gateway"]

ServeGateway = Callable[..., Awaitable[LiveGateway]]
# A request line and half a header: what a slowloris client sends, then nothing.
PARTIAL_HEAD = b"DELETE /v2/images/0 HTTP/1.1\r\nHost: g\r\nX-Auth-To"
LIMITS = b"GET /limits HTTP/1.1\r\nHost: g\r\n\r\n"
# Long enough that no slow client is cut by a timer while a test runs: only
# the capacity rules close them.
PATIENT = {"header_read_timeout": 120, "keepalive_timeout": 120}


def client_limits(gateway: LiveGateway) -> ClientLimits:
    return gateway.app[GATEWAY].client_limits


def store_url(store_server: TestServer) -> str:
    return str(store_server.make_url("")).rstrip("/")


async def test_past_the_cap_with_every_connection_in_a_request_a_new_one_gets_503(
    serve_gateway: ServeGateway,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream, url = scripted
    upstream.hang = True
    gateway = await serve_gateway(url, listen={"max_connections": 3})
    held = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"DELETE /v2/images/%s HTTP/1.1\r\nHost: g\r\nX-Auth-Token: %s\r\n\r\n"
            % (str(uuid.uuid4()).encode(), token(roles=["admin"]).encode())
        )
        held.append((reader, writer))
    # All three are inside a request: the backend holds each.
    await until(lambda: len(upstream.received) == 3, "three requests at the backend")

    caplog.set_level(logging.INFO)
    # A client that sends nothing, and one that sends its request at once.
    answers = [await exchange(gateway.port, data) for data in (b"", LIMITS, b"", LIMITS, b"")]
    for raw in answers:
        response = parse_response(raw)
        assert response.status == 503
        assert response.headers["connection"] == "close"
        assert response.headers["x-openstack-request-id"].startswith("req-")
        assert b'"serviceUnavailable"' in response.body
    limits = client_limits(gateway)
    assert limits.refused_connections == 5
    assert limits.evicted_at_capacity == 0
    # One line for the five, and no traceback from anyone (uvloop's transport
    # once failed an isinstance check here and logged one per connection).
    refusals = [r for r in caplog.records if "refused connections" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].levelno == logging.WARNING
    assert "(0 more since the last such line)" in refusals[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    upstream.release.set()
    for reader, writer in held:
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 ")
        writer.close()


def test_a_throttled_line_says_how_many_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttled = ThrottledLog("refused connections", interval=10.0, clock=lambda: now[0])
    for at in (0.0, 1.0, 2.0, 9.9, 10.0, 10.5, 25.0):
        now[0] = at
        throttled.event(f"at {at}")
    assert [r.getMessage() for r in caplog.records] == [
        "refused connections: at 0.0 (0 more since the last such line)",
        "refused connections: at 10.0 (3 more since the last such line)",
        "refused connections: at 25.0 (1 more since the last such line)",
    ]


async def test_a_half_sent_head_is_cut_at_its_deadline(
    serve_gateway: ServeGateway, scripted: tuple[ScriptedUpstream, str]
) -> None:
    """On both loops: under uvloop the first bytes can come before aiohttp
    waits for a request, and once set no deadline for them."""
    gateway = await serve_gateway(
        scripted[1], listen={"header_read_timeout": 0.2, "keepalive_timeout": 120}
    )
    response = parse_response(await exchange(gateway.port, PARTIAL_HEAD))
    assert response.status == 408
    assert client_limits(gateway).header_timeouts == 1


@dataclass(eq=False)
class Waiting:
    """A connection as the eviction order sees it."""

    since: float | None
    evicted: bool = False

    def waiting_since(self) -> float | None:
        return None if self.evicted else self.since

    def evict(self) -> None:
        self.evicted = True


def test_the_eviction_order_is_oldest_waiting_first_and_skips_what_changed() -> None:
    busy, idle_late, idle_early, head_mid = (
        Waiting(None),
        Waiting(30.0),
        Waiting(10.0),
        Waiting(20.0),
    )
    connections = [busy, idle_late, idle_early, head_mid]
    order: OldestWaiting[Waiting] = OldestWaiting()

    def evict(now: float = 100.0) -> Waiting | None:
        oldest = order.pop(connections, now)
        if oldest is not None:
            oldest.evict()
        return oldest

    assert evict() is idle_early
    # Since the scan: one served a request and waits again (later), one began waiting.
    head_mid.since, busy.since = 40.0, 35.0
    assert evict() is idle_late
    assert evict() is busy
    assert evict() is head_mid
    assert evict() is None
    # Nobody waited: no scan again until a moment has passed.
    late = Waiting(50.0)
    connections.append(late)
    assert evict(100.0 + RESCAN_AFTER_EMPTY / 2) is None
    assert evict(100.0 + RESCAN_AFTER_EMPTY) is late


def test_unfinished_heads_are_counted_per_client() -> None:
    heads: UnfinishedHeads[Waiting] = UnfinishedHeads(per_client=2)
    a1, a2, a3, b1 = (Waiting(0.0) for _ in range(4))
    assert heads.add("10.0.0.1", a1) is None
    assert heads.add("10.0.0.1", a2) is None
    assert heads.add("10.0.0.2", b1) is None
    # One head too many: the client's own oldest is the one to close.
    assert heads.add("10.0.0.1", a3) is a1
    heads.remove("10.0.0.1", a1)
    assert (heads.count("10.0.0.1"), heads.count("10.0.0.2")) == (2, 1)
    heads.remove("10.0.0.2", b1)
    heads.remove("10.0.0.2", b1)  # twice: a deadline and a close may both end it
    assert heads.count("10.0.0.2") == 0


async def test_at_the_cap_the_longest_idle_connection_makes_room(
    serve_gateway: ServeGateway, scripted: tuple[ScriptedUpstream, str]
) -> None:
    gateway = await serve_gateway(scripted[1], listen={"max_connections": 3, **PATIENT})
    idle = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(LIMITS)
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(parse_response(head).headers["content-length"]))
        idle.append((reader, writer))
    # A fourth client is answered, not refused...
    assert parse_response(await exchange(gateway.port, LIMITS)).status == 401
    # ...the first of the three idle ones was closed, without a word...
    async with asyncio.timeout(10):
        assert await idle[0][0].read() == b""
    # ...and the other two still serve.
    for reader, writer in idle[1:]:
        writer.write(LIMITS)
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 401")
        writer.close()
    limits = client_limits(gateway)
    assert (limits.evicted_at_capacity, limits.refused_connections) == (1, 0)


@dataclass
class SlowClient:
    """A real socket that sent ``PARTIAL_HEAD`` from its own address and waits."""

    sock: socket.socket

    def closed(self) -> bool:
        """The gateway closed it (its answer, if any, is waiting to be read)."""
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except ConnectionError:
            return True
        return True

    async def answer(self) -> bytes:
        loop = asyncio.get_running_loop()
        received = b""
        async with asyncio.timeout(10):
            while chunk := await loop.sock_recv(self.sock, 65536):
                received += chunk
        return received


@dataclass
class Slowloris:
    """Opens slow clients, oldest first, from the given addresses in turn."""

    port: int
    addresses: list[str]
    clients: list[SlowClient] = field(default_factory=list)

    async def open(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((self.addresses[len(self.clients) % len(self.addresses)], 0))
            await loop.sock_connect(sock, ("127.0.0.1", self.port))
            await loop.sock_sendall(sock, PARTIAL_HEAD)
            self.clients.append(SlowClient(sock))

    def closed(self) -> list[bool]:
        return [client.closed() for client in self.clients]

    def close(self) -> None:
        for client in self.clients:
            client.sock.close()


@pytest.fixture
async def slowloris() -> AsyncIterator[Callable[[int, list[str]], Slowloris]]:
    made: list[Slowloris] = []

    def make(port: int, addresses: list[str]) -> Slowloris:
        made.append(Slowloris(port, addresses))
        return made[-1]

    yield make
    for attack in made:
        attack.close()


@dataclass
class LegitimateClient:
    """Deletes its own images one after another, each on a new connection."""

    url: str
    store_app: web.Application
    token: str
    statuses: list[int] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def delete_until(self, done: asyncio.Event, then: int) -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            while not done.is_set() or then > 0:
                then -= done.is_set()
                image = add_image(self.store_app, owner="project-a")
                async with session.delete(
                    f"{self.url}/v2/images/{image.id}", headers={"X-Auth-Token": self.token}
                ) as response:
                    self.statuses.append(response.status)
                self.answered.set()

    async def answered_once_more(self) -> None:
        self.answered.clear()
        await self.answered.wait()


async def attack_while_deleting(
    attack: Slowloris, legitimate: LegitimateClient, connections: int, waves: int
) -> None:
    """Opens the slow clients in waves; between waves a legitimate delete
    completes, and ten more once all have landed: every one is a 204."""
    landed = asyncio.Event()
    deleting = asyncio.create_task(legitimate.delete_until(landed, then=10))
    for _ in range(waves):
        await attack.open(connections // waves)
        async with asyncio.timeout(10):
            await legitimate.answered_once_more()
    landed.set()
    await deleting
    assert len(legitimate.statuses) >= waves + 10
    assert set(legitimate.statuses) == {204}


async def test_300_slowloris_clients_from_many_hosts_do_not_lock_a_client_out(
    serve_gateway: ServeGateway,
    store_server: TestServer,
    store_app: web.Application,
    token: TokenFactory,
    slowloris: Callable[[int, list[str]], Slowloris],
) -> None:
    """Thirty hosts, ten half-sent heads each (under the per-client cap), three
    times the cap in all: each new connection closes the one that has waited
    longest for its head, and the legitimate client's deletes all go through."""
    cap = 100
    gateway = await serve_gateway(
        store_url(store_server), listen={"max_connections": cap, **PATIENT}
    )
    attack = slowloris(gateway.port, [f"127.0.0.{n}" for n in range(2, 32)])
    legitimate = LegitimateClient(f"http://127.0.0.1:{gateway.port}", store_app, token())
    await attack_while_deleting(attack, legitimate, connections=300, waves=10)
    limits = client_limits(gateway)
    # Every eviction is a slow client's (the legitimate one never waited
    # longest), and the gateway has closed each one it evicted.
    await until(
        lambda: sum(attack.closed()) == limits.evicted_at_capacity, "the evictions to be closed"
    )
    closed = attack.closed()
    assert limits.evicted_at_capacity >= 300 - cap
    assert limits.refused_connections == 0
    # Oldest first: every slow client still open came after every one closed.
    assert closed == sorted(closed, reverse=True)
    # Those that had sent part of a head were told why.
    answers = [await c.answer() for c, gone in zip(attack.clients, closed, strict=True) if gone]
    faults = [parse_response(a) for a in answers if a]
    assert faults
    assert {f.status for f in faults} == {503}
    assert all(b'"serviceUnavailable"' in f.body for f in faults)


async def test_300_slowloris_clients_from_one_host_hold_only_their_share(
    serve_gateway: ServeGateway,
    store_server: TestServer,
    store_app: web.Application,
    token: TokenFactory,
    slowloris: Callable[[int, list[str]], Slowloris],
) -> None:
    """One host may have 16 heads part-way sent: each one more closes its own
    oldest with a 503, and another slow host and the legitimate client are
    untouched."""
    per_client = 16
    gateway = await serve_gateway(
        store_url(store_server),
        listen={"max_connections": 100, "max_unfinished_heads_per_client": per_client, **PATIENT},
    )
    bystander = slowloris(gateway.port, ["127.0.0.3"])
    await bystander.open(1)
    attack = slowloris(gateway.port, ["127.0.0.2"])
    legitimate = LegitimateClient(f"http://127.0.0.1:{gateway.port}", store_app, token())
    await attack_while_deleting(attack, legitimate, connections=300, waves=10)
    limits = client_limits(gateway)
    await until(
        lambda: limits.evicted_per_client == 300 - per_client, "the host's oldest heads closed"
    )
    await until(lambda: sum(attack.closed()) == 300 - per_client, "the evictions to be closed")
    # The newest 16 stay; every older one was answered 503 and closed.
    assert attack.closed() == [True] * (300 - per_client) + [False] * per_client
    for client in attack.clients[: 300 - per_client]:
        response = parse_response(await client.answer())
        assert response.status == 503
        assert b"The gateway is at capacity." in response.body
    assert bystander.closed() == [False]
    assert (limits.evicted_at_capacity, limits.refused_connections) == (0, 0)
