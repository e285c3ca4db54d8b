"""Keystone tokens against JWTs, side by side in one run, with a real Keystone.

    python -m bench.keystone_tokens [--rounds 20000] [--cold 60]   # from the repository root

Starts Keystone from `.keystone-venv` (as the tests do: sqlite, Fernet,
gunicorn) and a gateway trusting both it and a JWT issuer, in front of the
stand-in image store. Prints:

- a cached Keystone token vs a cached JWT: the token step alone
  (``Authenticator.inspect``) and whole DELETE requests through the gateway,
  microseconds each and their ratio (the goal is 1);
- validations per second on a cold cache: distinct Keystone tokens, none
  cached, validated 8 at a time: what Keystone plus the gateway sustain.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.app import GATEWAY, build_app
from gateway.config import parse_config
from gateway.demo_backend.image_store import add_image, create_standin_store_app
from tests.integration.keystone import Keystone, keystone_section, run_keystone
from tests.support.ports import free_port


async def _side_by_side(
    rounds: int, first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]]
) -> tuple[float, float]:
    """Microseconds per call of each, interleaved in batches of 50 (alternating
    which goes first), so that a shared machine's load falls on both alike."""
    await first()
    await second()
    spent = [0.0, 0.0]
    batch = 50
    for index in range(max(1, rounds // batch)):
        order = [(0, first), (1, second)] if index % 2 == 0 else [(1, second), (0, first)]
        for slot, call in order:
            started = time.perf_counter()
            for _ in range(batch):
                await call()
            spent[slot] += time.perf_counter() - started
    calls = max(1, rounds // batch) * batch
    return spent[0] / calls * 1e6, spent[1] / calls * 1e6


def _config(store_url: str, keystone: Keystone, public_pem: str) -> dict[str, Any]:
    service = keystone.create_user(keystone.create_project(), ("service",))
    return {
        "upstream": {"url": store_url},
        "auth": {
            "issuer": "https://idp.bench",
            "keys": [{"kid": "k1", "algorithm": "RS256", "public_key": public_pem}],
            "keystone": keystone_section(keystone, service),
        },
        "authorization": {"routes": {"image:delete": {"roles": ["member"]}}},
        # One rule that never refuses: the per-request path as deployed.
        "rate_limit": {
            "rules": [
                {
                    "name": "deletes",
                    "path": "^/v2/images/",
                    "methods": ["DELETE"],
                    "unit": "second",
                    "value": 1_000_000_000,
                }
            ]
        },
    }


async def main(rounds: int, cold: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with tempfile.TemporaryDirectory() as directory:
        started = time.monotonic()
        keystones = run_keystone(Path(directory), free_port())
        keystone = next(keystones)
        print(f"Keystone up in {time.monotonic() - started:.1f} s")
        try:
            await _compare(keystone, key, public_pem, rounds, cold)
        finally:
            keystones.close()


async def _compare(
    keystone: Keystone, key: rsa.RSAPrivateKey, public_pem: str, rounds: int, cold: int
) -> None:
    store_app = create_standin_store_app()
    store = TestServer(store_app, host="127.0.0.1")
    await store.start_server()
    config = parse_config(_config(str(store.make_url("")).rstrip("/"), keystone, public_pem))
    app = build_app(config)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        user = keystone.create_user(keystone.create_project(), ("member",))
        ks_token = keystone.token_of(user)
        now = int(time.time())
        claims = {
            "iss": "https://idp.bench",
            "exp": now + 3600,
            "iat": now,
            "jti": "j",
            "sub": user.id,
            "project_id": user.project_id,
            "roles": ["member"],
        }
        jwt_token = jwt.encode(claims, key, "RS256", headers={"kid": "k1"})
        gateway = app[GATEWAY]
        authenticator = gateway.authenticator

        jwt_step, ks_step = await _side_by_side(
            rounds,
            lambda: authenticator.inspect(jwt_token),
            lambda: authenticator.inspect(ks_token),
        )

        async def delete(token: str) -> None:
            image = add_image(store_app, owner=user.project_id)
            response = await client.delete(
                f"/v2/images/{image.id}", headers={"X-Auth-Token": token}
            )
            assert response.status == 204, await response.text()

        request_rounds = max(50, rounds // 10)
        jwt_request, ks_request = await _side_by_side(
            request_rounds, lambda: delete(jwt_token), lambda: delete(ks_token)
        )

        tokens = [keystone.token_of(user) for _ in range(cold)]
        assert gateway.keystone is not None
        before = keystone.validations()
        semaphore = asyncio.Semaphore(8)

        async def validate(token: str) -> None:
            async with semaphore:
                await authenticator.inspect(token)

        started = time.perf_counter()
        await asyncio.gather(*(validate(t) for t in tokens))
        elapsed = time.perf_counter() - started
        served = keystone.validations() - before
        assert served == cold, f"Keystone served {served} validations for {cold} cold tokens"

        print(f"rounds (token step / whole request)          {rounds} / {request_rounds}")
        print(f"token step, cached JWT                        {jwt_step:8.1f} us")
        print(f"token step, cached Keystone token             {ks_step:8.1f} us")
        print(f"token step, Keystone / JWT                    {ks_step / jwt_step:8.2f}x")
        print(f"whole DELETE, cached JWT                      {jwt_request:8.1f} us")
        print(f"whole DELETE, cached Keystone token           {ks_request:8.1f} us")
        print(f"whole DELETE, Keystone / JWT                  {ks_request / jwt_request:8.2f}x")
        print(
            f"cold cache: {cold} tokens validated at Keystone in {elapsed:.2f} s, "
            f"{cold / elapsed:.1f} validations/s (8 at a time)"
        )
    finally:
        await client.close()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--cold", type=int, default=60)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.cold))
