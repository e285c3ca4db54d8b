"""Sealed cache entries: a keyed hash for the key, AES-GCM bound to it for the value."""

from __future__ import annotations

import hashlib

from gateway.authn.keystone.sealing import TokenSealer

SECRET = b"a-shared-cache-secret-of-at-least-32-bytes"


def test_the_key_is_a_keyed_hash_the_same_on_every_replica() -> None:
    token = "gAAAAABexample"
    assert TokenSealer(SECRET).digest(token) == TokenSealer(SECRET).digest(token)
    assert TokenSealer(SECRET).digest(token) != TokenSealer(SECRET + b"!").digest(token)
    assert TokenSealer(SECRET).digest(token) != hashlib.sha256(token.encode()).digest()


def test_an_entry_opens_only_unaltered_under_its_own_key_and_secret() -> None:
    sealer = TokenSealer(SECRET)
    key, other_key = sealer.digest("t1"), sealer.digest("t2")
    sealed = sealer.seal(key, b"identity record")
    assert b"identity" not in sealed
    assert sealer.open(key, sealed) == b"identity record"
    assert sealer.open(other_key, sealed) is None, "moved under another token's key"
    assert TokenSealer(SECRET + b"!").open(key, sealed) is None, "another secret"
    for i in (0, 12, len(sealed) - 1):
        flipped = sealed[:i] + bytes([sealed[i] ^ 1]) + sealed[i + 1 :]
        assert sealer.open(key, flipped) is None, f"byte {i} flipped"
    assert sealer.open(key, sealed[:12]) is None
    assert sealer.open(key, b"") is None


def test_two_seals_of_one_entry_differ() -> None:
    sealer = TokenSealer(SECRET)
    key = sealer.digest("t")
    assert sealer.seal(key, b"same") != sealer.seal(key, b"same")
