"""Validated Keystone tokens shared by every replica through Redis, sealed.

An entry's key is the keyed hash of the token; its value is the token
record (or the reason Keystone refused it) sealed with AES-GCM bound to
that key (gateway.authn.keystone.sealing). Redis failing is a miss, never an
error: Keystone is asked instead, and the failure counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from gateway.authn.keystone.sealing import TokenSealer
from gateway.config import SharedTokenCache
from gateway.redis_connect import REDIS_FAILURES, connect

log = logging.getLogger("gateway.keystone")

# The first byte of an opened entry says what follows.
VALID = b"v"
REFUSED = b"r"


class SharedTokens:
    def __init__(self, config: SharedTokenCache, sealer: TokenSealer) -> None:
        self.config = config
        self.sealer = sealer
        self.client = connect(config.redis)
        self._prefix = f"{config.redis.key_prefix}:ks:".encode()
        self.hits = 0
        self.failures = 0
        self.tampered = 0

    async def close(self) -> None:
        await self.client.aclose()

    async def get(self, digest: bytes) -> bytes | None:
        """The opened entry for this token, or None (absent, tampered, or Redis failing)."""
        key = self._prefix + digest.hex().encode()
        try:
            async with asyncio.timeout(self.config.timeout):
                sealed = cast(bytes | None, await self.client.get(key))
        except REDIS_FAILURES as exc:
            self.failures += 1
            log.warning("keystone: shared token cache unreachable (%s): asking Keystone", exc)
            return None
        if sealed is None:
            return None
        opened = self.sealer.open(key, sealed)
        if opened is None:
            self.tampered += 1
            log.warning("keystone: a shared cache entry failed authentication; ignored")
            return None
        self.hits += 1
        return opened

    async def put(self, digest: bytes, entry: bytes, ttl: float) -> None:
        key = self._prefix + digest.hex().encode()
        milliseconds = int(ttl * 1000)
        if milliseconds <= 0:
            return
        try:
            async with asyncio.timeout(self.config.timeout):
                await self.client.set(key, self.sealer.seal(key, entry), px=milliseconds)
        except REDIS_FAILURES as exc:
            self.failures += 1
            log.warning("keystone: could not write the shared token cache (%s)", exc)
