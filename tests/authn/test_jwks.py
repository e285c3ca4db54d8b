"""JWKS: keys from a real HTTP key server on a free port, rotated mid-run.

The key server counts every fetch, so "at most one refetch per interval" is
measured where it costs: on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.app import GATEWAY
from gateway.authn.jwks import JwksKeySet
from gateway.config import ClientTlsConfig, JwksConfig
from gateway.demo_backend.image_store import RECEIVED, add_image
from tests.middleware.test_authentication import unsigned
from tests.support.certificates import PrivateCa
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.tokens import TokenFactory
from tests.support.waiting import until

ISSUER = "https://jwks-idp.test"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class KeyServer:
    """A JWKS endpoint whose keys a test rotates; it counts what it serves."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    # Signs tokens for kids the server does not hold (forgeries).
    stranger: rsa.RSAPrivateKey = field(default_factory=lambda: _rsa_key())
    fetches: int = 0
    # When the last fetch was served (time.monotonic()).
    fetched_at: float = 0.0
    failing: bool = False
    url: str = ""

    def add(self, kid: str) -> None:
        self.keys[kid] = _rsa_key()

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        self.fetched_at = time.monotonic()
        if self.failing:
            return web.Response(status=500, text="key server down")
        jwks = []
        for kid, key in self.keys.items():
            jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            jwks.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return web.json_response({"keys": jwks})

    def token(self, kid: str, project: str = "project-a", ttl: int = 600, **extra: Any) -> str:
        key = self.keys.get(kid, self.stranger)
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": "image-api",
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "sub": "alice",
            # This issuer nests the project and sends roles as an OAuth scope string.
            "tenant": {"id": project},
            "scope": "openid cloudImages:admin",
        }
        return jwt.encode(claims, key, "RS256", headers={"kid": kid, **extra})


@contextlib.asynccontextmanager
async def serving(kid: str) -> AsyncIterator[KeyServer]:
    """A key server holding one key, on a free port, for the block."""
    state = KeyServer()
    state.add(kid)
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/.well-known/jwks.json"))
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture
async def key_server() -> AsyncIterator[KeyServer]:
    async with serving("k1") as state:
        yield state


JwksGateway = Callable[..., Awaitable[Client]]


@pytest.fixture
def jwks_gateway(
    make_gateway: GatewayFactory, store_server: TestServer, key_server: KeyServer
) -> JwksGateway:
    async def make(**jwks: Any) -> Client:
        issuer = {
            "issuer": ISSUER,
            "audience": "image-api",
            "jwks": {"url": key_server.url, **jwks},
            "claims": {"project": "tenant.id", "user": "sub", "roles": "scope"},
        }
        return await make_gateway(
            str(store_server.make_url("")).rstrip("/"), auth={"issuers": [issuer]}
        )

    return make


def key_set(client: Client) -> JwksKeySet:
    assert client.app is not None
    (keys,) = client.app[GATEWAY].verifier.key_sets
    return keys


async def delete(client: Client, store_app: web.Application, tok: str) -> int:
    image = add_image(store_app, owner="project-a")
    response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    return response.status


async def test_keys_are_loaded_before_the_gateway_serves(
    jwks_gateway: JwksGateway, key_server: KeyServer
) -> None:
    client = await jwks_gateway()
    assert key_server.fetches == 1
    assert key_set(client).loaded


async def test_rotation_old_kid_until_removed_new_kid_after_one_refetch(
    jwks_gateway: JwksGateway, key_server: KeyServer, store_app: web.Application
) -> None:
    # The periodic refresh (cache_ttl) must not land between the counted
    # fetches below, yet come soon enough to drop a removed key.
    client = await jwks_gateway(min_refetch_interval=0.05, cache_ttl=1.5)
    old = key_server.token("k1")
    assert await delete(client, store_app, old) == 204
    assert store_app[RECEIVED][-1].headers["X-Project-Id"] == "project-a"
    assert store_app[RECEIVED][-1].headers["X-Roles"] == "cloudimages:admin,openid"

    key_server.add("k2")
    await asyncio.sleep(0.06)  # past min_refetch_interval, which is what is under test
    fetches = key_server.fetches
    assert await delete(client, store_app, key_server.token("k2")) == 204
    assert key_server.fetches == fetches + 1, "one refetch for the new kid"
    assert await delete(client, store_app, old) == 204, "the old kid works until removed"

    del key_server.keys["k1"]

    async def old_refused() -> bool:
        return await delete(client, store_app, old) == 401

    # The periodic refresh (cache_ttl) drops k1, and the cached token with it.
    await until(old_refused, "the old key to be refused", deadline=5.0, interval=0.02)
    assert await delete(client, store_app, key_server.token("k2")) == 204


async def test_a_thousand_forged_kids_cost_at_most_one_refetch_per_interval(
    jwks_gateway: JwksGateway, key_server: KeyServer, store_app: web.Application
) -> None:
    interval = 0.25
    client = await jwks_gateway(min_refetch_interval=interval)
    await asyncio.sleep(interval)  # let the first refetch be allowed
    image = add_image(store_app, owner="project-a")
    forged = [key_server.token(f"forged-{i}") for i in range(1000)]
    started = time.monotonic()
    responses = await asyncio.gather(
        *(client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok}) for tok in forged)
    )
    elapsed = time.monotonic() - started
    assert {r.status for r in responses} == {401}
    refetches = key_server.fetches - 1
    assert 1 <= refetches <= 1 + int(elapsed / interval), (refetches, elapsed)
    print(f"1000 forged kids in {elapsed:.2f} s: {refetches} refetch(es), interval {interval} s")
    assert key_set(client).fetches == key_server.fetches
    # A forged kid seen before is refused from the negative cache, even past the interval.
    await asyncio.sleep(interval)
    fetches = key_server.fetches
    response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": forged[0]})
    assert response.status == 401
    assert key_server.fetches == fetches
    assert len(store_app[RECEIVED]) == 0
    assert await delete(client, store_app, key_server.token("k1")) == 204


async def test_no_refetch_at_all_within_the_interval(
    jwks_gateway: JwksGateway, key_server: KeyServer, store_app: web.Application
) -> None:
    client = await jwks_gateway(min_refetch_interval=30)
    image = add_image(store_app, owner="project-a")
    for i in range(20):
        response = await client.delete(
            f"/v2/images/{image.id}", headers={"X-Auth-Token": key_server.token(f"forged-{i}")}
        )
        assert response.status == 401
    assert key_server.fetches == 1, "only the start-up fetch"


async def test_failed_fetch_keeps_the_last_good_keys(
    jwks_gateway: JwksGateway,
    key_server: KeyServer,
    store_app: web.Application,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await jwks_gateway(min_refetch_interval=0.01)
    key_server.failing = True
    await asyncio.sleep(0.02)  # past min_refetch_interval
    with caplog.at_level(logging.WARNING, logger="gateway.authn.jwks"):
        assert await delete(client, store_app, key_server.token("unknown")) == 401
    assert key_set(client).fetch_failures == 1
    assert any("answered 500" in r.getMessage() for r in caplog.records)
    assert await delete(client, store_app, key_server.token("k1")) == 204


@pytest.mark.parametrize("header", ["jku", "x5u"])
async def test_jku_and_x5u_are_never_followed(
    jwks_gateway: JwksGateway,
    key_server: KeyServer,
    store_app: web.Application,
    header: str,
) -> None:
    """An attacker's key set, named in the token, is never fetched or trusted."""
    async with serving("attacker") as attacker:
        client = await jwks_gateway(min_refetch_interval=30)
        pointer: dict[str, Any] = {header: attacker.url}
        forged = attacker.token("attacker", **pointer)
        response = await client.delete(
            f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": forged}
        )
        await assert_fault(response, 401, "unauthorized")
        # A genuine token carrying the header is verified as if it were absent.
        assert await delete(client, store_app, key_server.token("k1", **pointer)) == 204
        assert attacker.fetches == 0


@pytest.mark.parametrize("kid", ["../../jwks", "k1/..", "k1\n", "k1\x00", "", "x" * 300])
async def test_malformed_kid_is_refused_without_a_fetch(
    jwks_gateway: JwksGateway, key_server: KeyServer, store_app: web.Application, kid: str
) -> None:
    client = await jwks_gateway(min_refetch_interval=0.01)
    await asyncio.sleep(0.02)  # past min_refetch_interval, so only the kid check can stop it
    key_server.keys[kid] = key_server.keys["k1"]
    assert await delete(client, store_app, key_server.token(kid)) == 401
    assert key_server.fetches == 1


async def test_a_key_of_one_issuer_does_not_verify_anothers_tokens(
    jwks_gateway: JwksGateway,
    key_server: KeyServer,
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    """The top-level issuer (static keys) and the JWKS issuer are both trusted, apart."""
    client = await jwks_gateway(min_refetch_interval=30)
    assert await delete(client, store_app, token()) == 204
    # Signed with the top-level issuer's RSA key, claiming the JWKS issuer.
    crossed = token(kid="rsa", iss=ISSUER, tenant={"id": "project-a"}, scope="cloudImages:admin")
    assert await delete(client, store_app, crossed) == 401
    assert await delete(client, store_app, key_server.token("k1")) == 204


async def test_a_kid_too_soon_to_refetch_is_not_remembered_as_unknown(
    jwks_gateway: JwksGateway, key_server: KeyServer, store_app: web.Application
) -> None:
    # Long enough that a loaded machine still asks within it, after start-up's fetch.
    interval = 2.0
    client = await jwks_gateway(min_refetch_interval=interval, unknown_kid_ttl=60)
    key_server.add("k2")
    rotated = key_server.token("k2")
    assert await delete(client, store_app, rotated) == 401, "within the interval: no refetch"
    assert key_server.fetches == 1
    # The interval is what is under test: wait out what is left of it.
    await asyncio.sleep(max(0.0, key_server.fetched_at + interval - time.monotonic()))
    assert await delete(client, store_app, rotated) == 204
    assert key_server.fetches == 2


def _attacks(server: KeyServer) -> dict[str, str]:
    good = server.token("k1")
    header, payload, _ = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    public_pem = (
        server.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    confused = jwt.api_jws.PyJWS()
    confused._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
    return {
        "alg none": unsigned("none", claims),
        "hs256 keyed with the jwk": confused.encode(
            json.dumps(claims).encode(), public_pem, algorithm="HS256", headers={"kid": "k1"}
        ),
        "signature stripped": f"{header}.{payload}.",
        "expired": server.token("k1", ttl=-120),
        "wrong audience": jwt.encode(
            {**claims, "aud": "other"}, server.keys["k1"], "RS256", headers={"kid": "k1"}
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["alg none", "hs256 keyed with the jwk", "signature stripped", "expired", "wrong audience"],
)
async def test_attacks_on_a_jwks_issuer_are_401(
    jwks_gateway: JwksGateway, key_server: KeyServer, store_app: web.Application, case: str
) -> None:
    client = await jwks_gateway(min_refetch_interval=30)
    assert await delete(client, store_app, _attacks(key_server)[case]) == 401
    assert len(store_app[RECEIVED]) == 0


async def test_a_key_server_behind_mtls_with_a_private_ca(tmp_path: Path) -> None:
    server_ca, client_ca = PrivateCa(tmp_path, "server-ca"), PrivateCa(tmp_path, "client-ca")
    ours = client_ca.issue("image-gateway.example")
    state = KeyServer()
    state.add("k1")
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(
        ssl=server_ca.server_context(server_ca.issue("127.0.0.1"), client_ca=client_ca)
    )
    url = f"https://127.0.0.1:{server.port}/.well-known/jwks.json"
    trusted, untrusted = (
        JwksKeySet(
            JwksConfig(
                url=url,
                tls=ClientTlsConfig(ca_file=ca, cert_file=ours.cert_file, key_file=ours.key_file),
            )
        )
        for ca in (server_ca.ca_file, client_ca.ca_file)
    )
    try:
        await trusted.open()
        await untrusted.open()
        assert trusted.loaded
        assert trusted.key_count == 1
        # Another CA's certificate: not trusted, nothing fetched.
        assert not untrusted.loaded
        assert untrusted.fetch_failures == 1
        assert state.fetches == 1
    finally:
        await trusted.close()
        await untrusted.close()
        await server.close()
