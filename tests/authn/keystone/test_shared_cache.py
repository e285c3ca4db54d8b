"""The shared Keystone token cache in a real Redis: every entry's lifetime, in ms.

Redis is told in milliseconds (PX) what the validator decided in seconds: a
refusal lives ``negative_cache_ttl``, a valid token min(its expiry,
``cache_ttl``), and no replica trusts an entry longer than that.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis

from gateway.authn.keystone.sealing import TokenSealer
from gateway.authn.keystone.shared_cache import SharedTokens
from gateway.authn.keystone.validator import KeystoneTokens
from gateway.authn.revocation import RevocationList
from gateway.authn.tokens import InvalidToken
from gateway.config import SharedTokenCache
from tests.support.scripted_keystone import ScriptedKeystone, token_body

SECRET = "a-shared-cache-secret-of-32-bytes-at-least"


def shared_section(redis_url: str) -> dict[str, object]:
    return {"redis": {"url": redis_url}, "secret": SECRET}


def the_only_entry_ms(redis_url: str) -> int:
    """The remaining life, in ms, of the one token entry in Redis."""
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("*:ks:*")
    return int(client.pttl(key))


@pytest.fixture
async def shared_validator(
    keystone: ScriptedKeystone, redis_url: str
) -> AsyncIterator[KeystoneTokens]:
    config = keystone.config(
        shared_cache=shared_section(redis_url), negative_cache_ttl=4, cache_ttl=90
    )
    tokens = KeystoneTokens(config, RevocationList(), max_token_bytes=8192)
    await tokens.open()
    yield tokens
    await tokens.close()


async def test_an_entry_is_written_with_its_lifetime_in_milliseconds(redis_url: str) -> None:
    section = SharedTokenCache.model_validate(shared_section(redis_url))
    shared = SharedTokens(section, TokenSealer(SECRET.encode()))
    try:
        await shared.put(b"\x01" * 32, b"v-entry", 1.5)
        assert 1000 < the_only_entry_ms(redis_url) <= 1500
        assert await shared.get(b"\x01" * 32) == b"v-entry"
    finally:
        await shared.close()


async def test_a_refusal_is_shared_for_negative_cache_ttl(
    shared_validator: KeystoneTokens, redis_url: str
) -> None:
    with pytest.raises(InvalidToken):
        await shared_validator.inspect("gAAAAArefused")
    assert 3000 < the_only_entry_ms(redis_url) <= 4000


async def test_a_valid_token_is_shared_until_cache_ttl_or_its_expiry(
    shared_validator: KeystoneTokens, keystone: ScriptedKeystone, redis_url: str
) -> None:
    keystone.valid["gAAAAAlong"] = token_body("p1", "u1", ["member"], time.time() + 3600)
    await shared_validator.verify("gAAAAAlong")
    assert 89_000 < the_only_entry_ms(redis_url) <= 90_000
    redis.Redis.from_url(redis_url).flushall()
    keystone.valid["gAAAAAshort"] = token_body("p1", "u1", ["member"], time.time() + 20)
    await shared_validator.verify("gAAAAAshort")
    assert 19_000 < the_only_entry_ms(redis_url) <= 20_000
