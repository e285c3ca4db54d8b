"""Authentication: every bad token is 401 (or 400 when malformed as a header),
logged with the request id, and never reaches the upstream."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import GATEWAY
from gateway.demo_backend.image_store import RECEIVED, add_image
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.tokens import HS_SECRET, Keys, TokenFactory


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg: str, claims: dict[str, object]) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "https://idp.test",
        "aud": "image-api",
        "exp": now + 600,
        "sub": "alice",
        "project_id": "project-a",
        "roles": ["cloudImages:admin"],
    }
    claims.update(overrides)
    return claims


def bad_tokens(keys: Keys, token: TokenFactory) -> dict[str, str]:
    good = token()
    header, payload, signature = good.split(".")
    public_pem = keys.rsa_public_pem.encode()
    # The classic confusion: HS256 keyed with the RSA public key.
    hs_with_public = jwt.api_jws.PyJWS()
    hs_with_public._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[method-assign]
    confused = hs_with_public.encode(
        json.dumps(_claims()).encode(), public_pem, algorithm="HS256", headers={"kid": "rsa"}
    )
    return {
        "garbage": "not-a-token",
        # Cut inside the claims: half of the whole token can land in the
        # signature, which is refused as a bad signature, not as malformed.
        "truncated": f"{header}.{payload[: len(payload) // 2]}",
        "alg none": unsigned("none", _claims()),
        "alg None": unsigned("None", _claims()),
        "alg NONE": unsigned("NONE", _claims()),
        "alg nOnE": unsigned("nOnE", _claims()),
        "signature stripped": f"{header}.{payload}.",
        "tampered payload": f"{header}.{_b64(json.dumps(_claims(project_id='b')).encode())}."
        f"{signature}",
        "bad base64": f"{header}.{payload}!!.{signature}",
        "hs256 with rsa public key": confused,
        "wrong alg for kid": token(kid="hs").replace(
            token(kid="hs").split(".")[0], _b64(b'{"alg":"HS512","kid":"hs","typ":"JWT"}')
        ),
        "expired": token(ttl=-120),
        "nbf in future": token(nbf=int(time.time()) + 3600),
        "wrong issuer": token(iss="https://evil.test"),
        "wrong audience": token(aud="other-api"),
        "missing exp": jwt.encode(
            {k: v for k, v in _claims().items() if k != "exp"}, HS_SECRET, "HS256"
        ),
        "unknown kid": jwt.encode(_claims(), HS_SECRET, "HS256", headers={"kid": "../../etc"}),
        "kid with control chars": jwt.encode(
            _claims(), HS_SECRET, "HS256", headers={"kid": "hs\n\x00"}
        ),
        "jku ignored": jwt.encode(
            _claims(),
            keys.rsa_private,
            "RS256",
            headers={"kid": "attacker", "jku": "http://127.0.0.1:1/jwks.json"},
        ),
        "x5u ignored": jwt.encode(
            _claims(),
            keys.rsa_private,
            "RS256",
            headers={"kid": "attacker", "x5u": "http://127.0.0.1:1/cert.pem"},
        ),
        "kid with a trailing newline": jwt.encode(
            _claims(), HS_SECRET, "HS256", headers={"kid": "hs\n"}
        ),
        "no project": token(project_id=None),
        "project with CRLF": token(project_id="project-a\r\nX-Roles: admin"),
        "user with NUL": token(sub="alice\x00"),
        "role with a comma": token(roles=["reader,admin"]),
        "empty role": token(roles=["cloudImages:admin", ""]),
        "roles not a list": token(roles={"admin": True}),  # type: ignore[arg-type]
        "oversized": token(padding="x" * 7000),
        "wrong secret": jwt.encode(
            _claims(), "another-secret-of-enough-length-0123456789", "HS256"
        ),
    }


CASES = [
    "garbage",
    "truncated",
    "alg none",
    "alg None",
    "alg NONE",
    "alg nOnE",
    "signature stripped",
    "tampered payload",
    "bad base64",
    "hs256 with rsa public key",
    "wrong alg for kid",
    "expired",
    "nbf in future",
    "wrong issuer",
    "wrong audience",
    "missing exp",
    "unknown kid",
    "kid with control chars",
    "jku ignored",
    "x5u ignored",
    "kid with a trailing newline",
    "no project",
    "project with CRLF",
    "user with NUL",
    "role with a comma",
    "empty role",
    "roles not a list",
    "oversized",
    "wrong secret",
]


@pytest.mark.parametrize("case", CASES)
async def test_bad_token_is_401_logged_and_never_forwarded(
    gateway: Client,
    store_app: web.Application,
    keys: Keys,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    bad = bad_tokens(keys, token)[case]
    image = add_image(store_app, owner="project-a")
    with caplog.at_level(logging.INFO, logger="gateway"):
        response = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": bad})
    await assert_fault(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="image-gateway"')
    assert len(store_app[RECEIVED]) == 0
    request_id = response.headers["X-Compute-Request-Id"]
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert logged, "the refusal is logged with the request id"
    assert all(bad not in r.getMessage() for r in caplog.records), "the token is never logged"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_the_bearer_scheme_is_matched_in_any_case(
    gateway: Client, store_app: web.Application, token: TokenFactory, scheme: str
) -> None:
    """Authentication schemes are case-insensitive (RFC 9110 §11.1)."""
    image = add_image(store_app, owner="project-a")
    response = await gateway.delete(
        f"/v2/images/{image.id}", headers={"Authorization": f"{scheme} {token()}"}
    )
    assert response.status == 204
    sent = store_app[RECEIVED][-1]
    assert sent.method == "DELETE"
    assert sent.headers["X-Project-Id"] == "project-a"
    assert "Authorization" not in sent.headers


async def test_the_same_token_is_verified_once(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    verifier = gateway.app[GATEWAY].verifier if gateway.app is not None else None
    assert verifier is not None
    tok = token()
    for _ in range(3):
        image = add_image(store_app, owner="project-a")
        response = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
        assert response.status == 204
    assert (verifier.cache.misses, verifier.cache.hits) == (1, 2)


async def test_each_configured_algorithm_is_accepted(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    for kid in ("hs", "rsa", "ec"):
        image = add_image(store_app, owner="project-a")
        response = await gateway.delete(
            f"/v2/images/{image.id}", headers={"X-Auth-Token": token(kid=kid)}
        )
        assert response.status == 204, kid


async def test_roles_as_space_separated_string(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    tok = token(roles="openid cloudImages:admin")  # type: ignore[arg-type]
    response = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    assert response.status == 204
    assert store_app[RECEIVED][-1].headers["X-Roles"] == "cloudimages:admin,openid"


async def test_unique_request_ids(gateway: Client) -> None:
    ids = set()
    for _ in range(5):
        response = await gateway.delete(f"/v2/images/{uuid.uuid4()}")
        ids.add(response.headers["X-Compute-Request-Id"])
    assert len(ids) == 5


async def test_a_key_without_kid_verifies_tokens_that_carry_one(
    make_gateway: GatewayFactory, store_server: TestServer, store_app: web.Application
) -> None:
    data_keys = [{"algorithm": "HS256", "secret": HS_SECRET}]
    client = await make_gateway(
        str(store_server.make_url("")).rstrip("/"), auth={"keys": data_keys}
    )
    image = add_image(store_app, owner="project-a")
    tok = jwt.encode(_claims(), HS_SECRET, "HS256", headers={"kid": "rotated-2026"})
    response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    assert response.status == 204


async def test_names_and_domains_go_upstream_as_keystonemiddleware_sends_them(
    make_gateway: GatewayFactory,
    store_server: TestServer,
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    claims = {
        "project_name": "tenant.name",
        "project_domain_id": "tenant.domain",
        "user_name": "preferred_username",
        "user_domain_id": "user_domain",
    }
    client = await make_gateway(str(store_server.make_url("")).rstrip("/"), auth={"claims": claims})
    named = token(
        tenant={"name": "Project A", "domain": "default"},
        preferred_username="Alice",
        user_domain="default",
    )
    image = add_image(store_app, owner="project-a")
    response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": named})
    assert response.status == 204
    sent = store_app[RECEIVED][-1].headers
    assert sent["X-Project-Name"] == "Project A"
    assert sent["X-Project-Domain-Id"] == "default"
    assert sent["X-User-Name"] == "Alice"
    assert sent["X-User-Domain-Id"] == "default"

    unnamed = add_image(store_app, owner="project-a")
    response = await client.delete(f"/v2/images/{unnamed.id}", headers={"X-Auth-Token": token()})
    assert response.status == 204, "the names are optional"
    assert "X-Project-Name" not in store_app[RECEIVED][-1].headers

    for bad in ({"name": ["Project A"]}, {"name": "A\r\nX-Roles: admin"}):
        response = await client.delete(
            f"/v2/images/{unnamed.id}", headers={"X-Auth-Token": token(tenant=bad)}
        )
        await assert_fault(response, 401, "unauthorized")
