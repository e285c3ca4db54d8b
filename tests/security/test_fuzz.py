"""A bounded, seeded fuzz of the whole request path, as served by ``run``.

Thousands of requests built from a valid one by random mutation (request
line, path, headers, header-name spellings, tokens, framing, bodies), sent as
raw bytes over real sockets, a few at a time. Whatever arrives: no 5xx, no
traceback or ERROR in the log, no connection left hanging, and the process's
memory does not grow past a bound. The seed is fixed so a failure replays;
FUZZ_SEED and FUZZ_REQUESTS change it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.security.conftest import LiveGateway, RawBackend, exchange, parse_response
from tests.support.tokens import TokenFactory

SEED = int(os.environ.get("FUZZ_SEED", "20261130"))
REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "5000"))
CONCURRENCY = 16
# The backend here answers every request well, so nothing may be a 5xx but
# the one a client earns: 508, a Via that already names the gateway (a loop).
# A client's other mistakes are 4xx.
EXPECTED_5XX = {508}
RSS_GROWTH_LIMIT = 40 * 1024 * 1024

ServeGateway = Callable[..., Awaitable[LiveGateway]]

METHODS = ["DELETE", "GET", "POST", "PUT", "PATCH", "HEAD", "OPTIONS", "DEL\x00", "G ET", "dElEtE"]
PATHS = [
    "/v2/images/{id}",
    "/images/{id}",
    "/v2/images/{ID}",
    "/v2/images/{id}%0a",
    "/v2/images/{id}/../{id}",
    "/v2/images/%2e%2e/{id}",
    "/v2/images/{id}?x=%23y&y=%zz",
    "/limits",
    "/v2/limits?q=\u00e9",
    "/v2/images/{{{id}}}",
    "/v2/images/",
    "/",
    "*",
    "/v2/images/{id}\u202e",
    "//v2/images/{id}",
    "/v2/images/{id};x=1",
    "/%ff%fe",
]
HEADER_NAMES = [
    "X-Roles",
    "X_Roles",
    "x_roles",
    "X-Project-Id",
    "X_Project_Id",
    "OpenStack-System-Scope",
    "X-Storage-Token",
    "X-Identity-Status",
    "Via",
    "X-Forwarded-For",
    "X-OpenStack-Request-Id",
    "Accept",
    "Content-Type",
    "Range",
    "Connection",
    "Transfer-Encoding",
    "Content-Length",
    "Expect",
    "Upgrade",
    "Authorization",
    "X-Auth-Token",
    "Host",
    "X-Custom",
    "Te",
]
VALUES = [
    "admin",
    "",
    " ",
    "a" * 9000,
    "chunked",
    "gzip, chunked",
    "0",
    "-1",
    "99999999999999999999",
    "close, X-Roles",
    "1.1 image-gateway",
    "req-" + str(uuid.uuid4()),
    "bytes=0-",
    "\u00ff\u0100",
    "Bearer",
    "Bearer x y",
    "*/*;q=abc",
    "100-continue",
    "h2c",
    "a,b,,c",
    "\x7f",
    "\x01",
]


class Fuzzer:
    def __init__(self, rng: random.Random, token: TokenFactory) -> None:
        self.rng = rng
        self.tokens = [
            token(),
            token(roles=["admin"]),
            token(project="project-b"),
            token(ttl=-100),
            token(project="../../x"),
            token(kid="hs"),
            "x.y.z",
            "eyJhbGciOiJub25lIn0.e30.",
            token()[:-5],
            "\udcff" * 5,
            "a" * 9000,
        ]

    def request(self) -> bytes:
        rng = self.rng
        image = uuid.uuid4()
        path = rng.choice(PATHS).format(id=image, ID=str(image).upper())
        lines = [f"{rng.choice(METHODS)} {path} HTTP/1.1", "Host: gateway"]
        if rng.random() < 0.8:
            lines.append(f"X-Auth-Token: {rng.choice(self.tokens)}")
        for _ in range(rng.randrange(6)):
            lines.append(f"{rng.choice(HEADER_NAMES)}: {rng.choice(VALUES)}")
        if rng.random() < 0.05:
            lines = [line for line in lines if not line.startswith("Host")]
        if rng.random() < 0.05:
            lines.append(" folded continuation")
        body = ""
        if rng.random() < 0.2:
            body = rng.choice(["abc", "0\r\n\r\n", "zz\r\nx\r\n0\r\n\r\n", "5\r\nab"])
            lines.append(rng.choice(["Content-Length: 3", "Transfer-Encoding: chunked"]))
        lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")
        if rng.random() < 0.05:
            # Flip bytes anywhere, the head included.
            raw = bytearray(data)
            for _ in range(rng.randrange(1, 5)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            data = bytes(raw)
        return data


class TracebackWatch(logging.Handler):
    """Keeps only what must not be logged: a traceback, or an ERROR."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or record.levelno >= logging.ERROR:
            self.bad.append(record.getMessage()[:300])


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_fuzzed_requests_never_get_a_5xx_a_traceback_or_a_hang(
    serve_gateway: ServeGateway,
    raw_backend: RawBackend,
    token: TokenFactory,
    tmp_path: Path,
) -> None:
    # A flipped byte can leave a request head without its end: the header
    # deadline answers it (408), well within the test's own deadline.
    gateway = await serve_gateway(
        raw_backend.url,
        listen={"header_read_timeout": 1.0},
        # Off stderr, which pytest keeps in memory.
        audit={"sink": str(tmp_path / "audit.jsonl")},
    )
    fuzzer = Fuzzer(random.Random(SEED), token)
    requests = [fuzzer.request() for _ in range(REQUESTS)]
    statuses: Counter[int] = Counter()
    unanswered = 0

    async def send(data: bytes) -> None:
        nonlocal unanswered
        # A hang fails the test here.
        try:
            raw = await exchange(gateway.port, data, deadline=5)
        except TimeoutError:
            raise AssertionError(f"no answer within 5 s to {data!r}") from None
        if not raw:
            unanswered += 1
            return
        status = parse_response(raw).status
        statuses[status] += 1
        assert 200 <= status < 500 or status in EXPECTED_5XX, (status, data[:300], raw[:300])
        assert b"Traceback" not in raw

    async def send_all(batch: list[bytes]) -> None:
        # A few clients at a time, each taking the next request: the test's
        # own bookkeeping stays small next to what the RSS bound measures.
        queue = iter(batch)

        async def client() -> None:
            for data in queue:
                await send(data)

        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))

    warm_up = REQUESTS // 10
    # Every record goes to the watch only: pytest's own log capture keeps
    # each one, which is memory the RSS bound would then measure.
    watch = TracebackWatch()
    loggers = [logging.getLogger(name) for name in ("gateway", "aiohttp")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)
        lg.propagate = False
        lg.addHandler(watch)
    try:
        await send_all(requests[:warm_up])
        rss_before = rss_bytes()
        await send_all(requests[warm_up:])
        rss_after = rss_bytes()
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(watch)
            lg.setLevel(level)
            lg.propagate = propagate

    assert watch.bad == []
    assert sum(statuses.values()) + unanswered == REQUESTS, statuses
    # The mix reached every layer: forwarded, refused by the parser, by
    # routing and by authentication.
    assert statuses[204] > 0, statuses
    assert statuses[400] > 0
    assert statuses[401] > 0
    assert statuses[404] + statuses[405] > 0
    # A connection closed without an answer is aiohttp dropping bytes that
    # are not HTTP at all; it must stay rare.
    assert unanswered < REQUESTS // 50, unanswered
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, rss_after - rss_before
