"""The verified-token cache: keyed by a hash, bounded, never past exp."""

from __future__ import annotations

import hashlib
import time

import jwt

from gateway.authn.tokens import JwtVerifier
from gateway.config import parse_config
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory


def verifier(keys: Keys, size: int) -> JwtVerifier:
    config = parse_config(config_data("http://127.0.0.1:1", keys, auth={"token_cache_size": size}))
    return JwtVerifier(config.auth)


async def test_bounded_and_keyed_by_the_hash_never_the_token(
    keys: Keys, token: TokenFactory
) -> None:
    checker = verifier(keys, size=2)
    tokens = [token(user=f"u{i}") for i in range(3)]
    for tok in tokens:
        await checker.verify(tok)
    assert len(checker.cache) == 2
    now = time.time()
    found = [checker.cache.get(hashlib.sha256(t.encode()).digest(), now) for t in tokens]
    assert found[0] is None, "the least recently used entry went"
    assert all(entry is not None for entry in found[1:])


async def test_an_entry_dies_with_the_tokens_exp(keys: Keys, token: TokenFactory) -> None:
    checker = verifier(keys, size=10)
    tok = token(ttl=60)
    await checker.verify(tok)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    digest = hashlib.sha256(tok.encode()).digest()
    assert checker.cache.get(digest, exp - 1) is not None
    assert checker.cache.get(digest, exp) is None
