"""KeystoneTokens: what is cached, for how long, and how often Keystone is asked.

Against a Keystone on a real socket (tests/authn/keystone/conftest.py). Each
lifetime is read off the cache entry itself, so no test waits one out: a
refusal lives ``negative_cache_ttl`` seconds, a valid token until
min(its expiry, ``cache_ttl``), and concurrent requests share one look-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.authn.identity import Identity
from gateway.authn.keystone.validator import KeystoneTokens
from gateway.authn.revocation import RevocationList
from gateway.authn.tokens import InvalidToken
from tests.support.scripted_keystone import ScriptedKeystone, token_body
from tests.support.waiting import until

UNKNOWN = "Keystone does not know the token (invalid, expired, revoked)."

Validator = Callable[..., KeystoneTokens]


@pytest.fixture
async def validator(keystone: ScriptedKeystone) -> AsyncIterator[Validator]:
    opened: list[KeystoneTokens] = []

    def make(**settings: Any) -> KeystoneTokens:
        tokens = KeystoneTokens(keystone.config(**settings), RevocationList(), max_token_bytes=8192)
        opened.append(tokens)
        return tokens

    yield make
    for tokens in opened:
        await tokens.close()


async def opened(tokens: KeystoneTokens) -> KeystoneTokens:
    await tokens.open()
    return tokens


def assert_trusted_for(tokens: KeystoneTokens, token: str, since: float, seconds: float) -> None:
    """The local entry for ``token``, cached just after ``since``, ends ``seconds`` later
    (give or take the time the test took to get it cached)."""
    digest = tokens.digest(token)
    assert tokens.local.get(digest, since + seconds - 0.5) is not None, "ended too early"
    # Last: a look-up past an entry's end removes it.
    assert tokens.local.get(digest, since + seconds + 0.5) is None, "trusted too long"


async def test_a_refused_token_is_refused_from_the_cache_for_negative_cache_ttl(
    validator: Validator, keystone: ScriptedKeystone
) -> None:
    tokens = await opened(validator(negative_cache_ttl=7))
    before = time.time()
    for _ in range(3):
        with pytest.raises(InvalidToken, match=r"Keystone does not know the token"):
            await tokens.inspect("gAAAAAunknown")
    assert keystone.validations["gAAAAAunknown"] == 1, "asked once, then refused from the cache"
    assert tokens.refused == 1
    assert_trusted_for(tokens, "gAAAAAunknown", before, 7)


async def test_a_refusal_is_asked_again_once_its_lifetime_is_over(
    validator: Validator, keystone: ScriptedKeystone
) -> None:
    tokens = await opened(validator(negative_cache_ttl=0.2))
    with pytest.raises(InvalidToken):
        await tokens.inspect("gAAAAAlater-valid")
    keystone.valid["gAAAAAlater-valid"] = token_body("p1", "u1", ["member"], time.time() + 600)

    async def accepted() -> Identity | None:
        try:
            return await tokens.verify("gAAAAAlater-valid")
        except InvalidToken:
            return None

    identity = await until(
        accepted, "the refusal to end with negative_cache_ttl", deadline=5, interval=0.02
    )
    assert identity.project_id == "p1"
    assert keystone.validations["gAAAAAlater-valid"] >= 2


@pytest.mark.parametrize(
    ("expires_in", "cache_ttl", "trusted_for"),
    [(3600, 60, 60), (30, 300, 30)],
)
async def test_a_valid_token_is_trusted_until_its_expiry_or_cache_ttl_whichever_first(
    validator: Validator,
    keystone: ScriptedKeystone,
    expires_in: float,
    cache_ttl: float,
    trusted_for: float,
) -> None:
    tokens = await opened(validator(cache_ttl=cache_ttl))
    before = time.time()
    keystone.valid["gAAAAAvalid"] = token_body("p1", "u1", ["Member"], before + expires_in)
    for _ in range(3):
        identity = await tokens.verify("gAAAAAvalid")
    assert (identity.project_id, identity.user_id, identity.roles) == (
        "p1",
        "u1",
        frozenset({"member"}),
    )
    assert keystone.validations["gAAAAAvalid"] == 1
    assert_trusted_for(tokens, "gAAAAAvalid", before, trusted_for)


async def burst(
    tokens: KeystoneTokens, keystone: ScriptedKeystone, token: str, n: int
) -> list[Any]:
    """``n`` concurrent verifications of ``token``, Keystone's answer held back until
    the first has reached it: what each got (an identity or the exception)."""
    keystone.answer.clear()
    waiting = [asyncio.ensure_future(tokens.verify(token)) for _ in range(n)]
    await until(
        lambda: keystone.validations[token], "Keystone to be asked", deadline=5, interval=0.005
    )
    keystone.answer.set()
    return await asyncio.gather(*waiting, return_exceptions=True)


async def test_concurrent_requests_with_one_uncached_token_share_one_validation(
    validator: Validator, keystone: ScriptedKeystone
) -> None:
    tokens = await opened(validator())
    keystone.valid["gAAAAAburst"] = token_body("p1", "u1", ["member"], time.time() + 600)
    identities = await burst(tokens, keystone, "gAAAAAburst", 10)
    assert {i.project_id for i in identities} == {"p1"}
    assert keystone.validations["gAAAAAburst"] == 1
    assert tokens.accepted == 1


async def test_concurrent_requests_with_one_refused_token_share_one_refusal(
    validator: Validator, keystone: ScriptedKeystone
) -> None:
    tokens = await opened(validator())
    results = await burst(tokens, keystone, "gAAAAAnope", 5)
    assert all(isinstance(r, InvalidToken) and str(r) == UNKNOWN for r in results)
    assert keystone.validations["gAAAAAnope"] == 1
    assert tokens.refused == 1
