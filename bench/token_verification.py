"""Token verification cost, side by side in one run: every token verified in
full (cache off), verified-token cache hits, and cache hits with 10,000 live
revocations to check against.

    python -m bench.token_verification [--rounds 20000]    # from the repository root

Prints microseconds per verification and the ratios between the three.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.authn.revocation import Revocation, RevocationList
from gateway.authn.tokens import JwtVerifier
from gateway.config import parse_config


def _verifier(public_pem: str, cache_size: int, revocations: RevocationList) -> JwtVerifier:
    config = parse_config(
        {
            "upstream": {"url": "http://127.0.0.1:1"},
            "auth": {
                "issuer": "https://idp.bench",
                "keys": [{"kid": "k1", "algorithm": "RS256", "public_key": public_pem}],
                "token_cache_size": cache_size,
            },
        }
    )
    return JwtVerifier(config.auth, revocations)


async def _time(rounds: int, verify: Callable[[], Awaitable[object]]) -> float:
    await verify()
    started = time.perf_counter()
    for _ in range(rounds):
        await verify()
    return (time.perf_counter() - started) / rounds * 1e6


async def main(rounds: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    now = int(time.time())
    claims = {
        "iss": "https://idp.bench",
        "exp": now + 3600,
        "iat": now,
        "jti": "j",
        "sub": "alice",
        "project_id": "p1",
        "roles": ["cloudImages:admin"],
    }
    token = jwt.encode(claims, key, "RS256", headers={"kid": "k1"})

    revoked = RevocationList()
    for _ in range(10_000):
        revoked.add(Revocation("jti", uuid.uuid4().hex, now, now + 3600))
    uncached = _verifier(public_pem, 0, RevocationList())
    cached = _verifier(public_pem, 10_000, RevocationList())
    cached_revoked = _verifier(public_pem, 10_000, revoked)

    full = await _time(rounds, lambda: uncached.verify(token))
    hit = await _time(rounds, lambda: cached.verify(token))
    hit_revoked = await _time(rounds, lambda: cached_revoked.verify(token))
    print(f"rounds per case                      {rounds}")
    print(f"full RS256 verification (no cache)   {full:8.1f} us")
    print(f"cache hit                            {hit:8.1f} us")
    print(f"cache hit, 10,000 live revocations   {hit_revoked:8.1f} us")
    print(f"full / cache hit                     {full / hit:8.1f}x")
    print(f"revocations / no revocations (hit)   {hit_revoked / hit:8.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20000)
    asyncio.run(main(parser.parse_args().rounds))
