"""Shared fixtures: real servers on free ports, real Redis, real keys.

The gateway under test talks over real sockets to the stand-in store (or to
a scripted upstream for fault cases) and, for the Redis limiter, to a
redis-server on a free port (tests/servers.py, the suite's one way to start
Redis). A missing redis-server binary is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.app import build_app
from gateway.config import GatewayConfig, parse_config
from gateway.demo_backend.image_store import create_standin_store_app
from gateway.ratelimit.store import LimitStore
from tests.servers import RedisProcess

HS_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
ISSUER = "https://idp.test"
AUDIENCE = "image-api"

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Keys:
    rsa_private: rsa.RSAPrivateKey
    rsa_public_pem: str
    ec_private: ec.EllipticCurvePrivateKey
    ec_public_pem: str


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="session")
def keys() -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return Keys(rsa_key, _public_pem(rsa_key), ec_key, _public_pem(ec_key))


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_data(upstream_url: str, keys: Keys, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "upstream": {"url": upstream_url, "connect_timeout": 1, "read_timeout": 2},
        "auth": {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "keys": [
                {"kid": "hs", "algorithm": "HS256", "secret": HS_SECRET},
                {"kid": "rsa", "algorithm": "RS256", "public_key": keys.rsa_public_pem},
                {"kid": "ec", "algorithm": "ES256", "public_key": keys.ec_public_pem},
            ],
        },
        "authorization": {
            "admin_roles": ["admin"],
            "routes": {"delete_image": {"roles": ["cloudImages:admin"]}},
        },
        "rate_limit": {
            "rules": [
                {
                    "name": "deletes",
                    "path": "^/(v2/)?images/",
                    "methods": ["DELETE"],
                    "unit": "minute",
                    "value": 1000,
                }
            ]
        },
    }
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return data


@dataclass
class TokenFactory:
    keys: Keys

    def __call__(
        self,
        project: str = "project-a",
        user: str = "alice",
        roles: list[str] | None = None,
        *,
        kid: str = "rsa",
        ttl: float = 600,
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + int(ttl),
            "jti": uuid.uuid4().hex,
            "sub": user,
            "project_id": project,
            "roles": ["cloudImages:admin"] if roles is None else roles,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        key: Any = {"rsa": self.keys.rsa_private, "ec": self.keys.ec_private, "hs": HS_SECRET}[kid]
        algorithm = {"rsa": "RS256", "ec": "ES256", "hs": "HS256"}[kid]
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def token(keys: Keys) -> TokenFactory:
    return TokenFactory(keys)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the whole session; each test gets it empty."""
    server = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    yield redis_server.url
    redis.Redis.from_url(redis_server.url).flushall()


@pytest.fixture
async def store_app() -> web.Application:
    return create_standin_store_app()


@pytest.fixture
async def store_server(store_app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(store_app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@dataclass
class ScriptedUpstream:
    """An upstream whose answer each test sets; it records what arrives."""

    status: int = 204
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    received: list[web.Request] = field(default_factory=list)
    # The body of each request received, in order.
    bodies: list[bytes] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(request)
        self.bodies.append(await request.read())
        if self.hang:
            await self.release.wait()
        return web.Response(
            status=self.status,
            body=self.body if self.status != 204 else None,
            content_type=self.content_type if self.status != 204 else None,
            headers=self.headers,
        )


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedUpstream, str]]:
    upstream = ScriptedUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield upstream, str(server.make_url("")).rstrip("/")
    upstream.release.set()
    await server.close()


GatewayFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_gateway(
    aiohttp_client: Callable[..., Awaitable[Client]], keys: Keys
) -> GatewayFactory:
    """Builds a gateway client in front of ``upstream_url`` with config overrides."""

    async def make(
        upstream_url: str, *, store: LimitStore | None = None, **sections: Any
    ) -> Client:
        config: GatewayConfig = parse_config(config_data(upstream_url, keys, **sections))
        return await aiohttp_client(build_app(config, store=store))

    return make


@pytest.fixture(params=["memory", "redis"])
def limiter_section(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The rate_limit section for each store, so tests run against both."""
    if request.param == "memory":
        return {"store": "memory"}
    url = request.getfixturevalue("redis_url")
    # A loaded test machine can keep Redis from answering within the shipped
    # timeout, and the limiter then fails open: these tests are not about that.
    return {"store": "redis", "redis": {"url": url, "timeout": 2}}


@pytest.fixture
async def gateway(
    make_gateway: GatewayFactory, store_server: TestServer, limiter_section: dict[str, Any]
) -> Client:
    """The whole gateway in front of the stand-in store, per limiter store."""
    return await make_gateway(
        str(store_server.make_url("")).rstrip("/"), rate_limit=limiter_section
    )
