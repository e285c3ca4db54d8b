"""One issuer's JSON Web Key Set, fetched with aiohttp and kept current.

- Loaded once before the gateway serves (``open``), then refreshed every
  ``cache_ttl`` in the background.
- A kid the set does not have triggers one refetch, shared by every request
  waiting for it (single flight), and at most one per
  ``min_refetch_interval``; a kid still missing afterwards is refused
  without asking again for ``unknown_kid_ttl``. A flood of forged kids
  therefore costs the key server at most one request per interval.
- A failed fetch keeps the last good keys; it is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp

from gateway.authn.keys import SAFE_KID, TrustedKey, fingerprint, keys_from_jwk
from gateway.config import JwksConfig
from gateway.expiring_lru import ExpiringLRU

log = logging.getLogger("gateway.authn.jwks")

# Bounds the negative cache so forged kids cannot grow memory without limit.
_UNKNOWN_KIDS_KEPT = 10000


class JwksFetchError(Exception):
    pass


class JwksKeySet:
    def __init__(self, config: JwksConfig) -> None:
        self.config = config
        self.url = config.url
        self._keys: dict[str, list[TrustedKey]] = {}
        self._fingerprints: dict[str, list[TrustedKey]] = {}
        self._unknown: ExpiringLRU[str, bool] = ExpiringLRU(_UNKNOWN_KIDS_KEPT)
        self._in_flight: asyncio.Task[bool] | None = None
        self._last_attempt = float("-inf")
        self._session: aiohttp.ClientSession | None = None
        self._refresher: asyncio.Task[None] | None = None
        # Counted here; metrics read them.
        self.fetches = 0
        self.fetch_failures = 0
        # Failures that were not the key server's (a bug, say), also counted
        # in fetch_failures; the refresher carries on after each.
        self.unexpected_failures = 0
        self.loaded = False

    async def open(self) -> None:
        """Fetch the keys once, then keep them fresh. A failure here is logged, not fatal."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        tls = self.config.tls
        connector = aiohttp.TCPConnector(ssl=tls.context() if tls is not None else True)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_periodically())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._in_flight is not None:
            self._in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._in_flight
        if self._session is not None:
            await self._session.close()

    def successful_fetches(self) -> int:
        return self.fetches - self.fetch_failures

    def failed_fetches(self) -> int:
        return self.fetch_failures

    @property
    def key_count(self) -> int:
        return sum(len(keys) for keys in self._keys.values())

    def has(self, key: TrustedKey) -> bool:
        """Whether the key is still in the set: one removed stops verifying cached tokens too."""
        return key.kid is not None and key in self._keys.get(key.kid, ())

    async def keys_for(self, kid: str) -> list[TrustedKey]:
        keys = self._keys.get(kid)
        if keys:
            return keys
        now = time.monotonic()
        if not SAFE_KID.match(kid) or self._unknown.get(kid, now):
            return []
        if now - self._last_attempt < self.config.min_refetch_interval and not self._in_flight:
            # Too soon to ask again. Not remembered as unknown: the set has not
            # been asked about this kid, and a key just rotated in is legitimate.
            return []
        await self.refresh()
        keys = self._keys.get(kid)
        if not keys:
            # The fresh set lacks it: refuse it without asking for a while.
            self._unknown.put(kid, True, time.monotonic() + self.config.unknown_kid_ttl)
            return []
        return keys

    async def refresh(self) -> bool:
        """Fetch the set now, or join the fetch already running; True if it succeeded."""
        if self._in_flight is None:
            self._in_flight = asyncio.create_task(self._fetch_and_install())
        task = self._in_flight
        try:
            return await asyncio.shield(task)
        finally:
            if task.done() and self._in_flight is task:
                self._in_flight = None

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.cache_ttl)
            await self.refresh()

    async def _fetch_and_install(self) -> bool:
        self._last_attempt = time.monotonic()
        self.fetches += 1
        try:
            document = await self._fetch()
            keys = self._parse(document)
        except JwksFetchError as exc:
            self.fetch_failures += 1
            log.warning(
                "JWKS %s: %s; keeping the %d key(s) last fetched", self.url, exc, self.key_count
            )
            return False
        except Exception:
            # Whatever the key server sent, start-up and the refresher go on.
            self.fetch_failures += 1
            self.unexpected_failures += 1
            log.exception(
                "JWKS %s: unexpected failure; keeping the %d key(s) last fetched",
                self.url,
                self.key_count,
            )
            return False
        self._keys = keys
        # A kid that exists now must not stay refused.
        for kid in keys:
            self._unknown.discard(kid)
        self.loaded = True
        log.info("JWKS %s: %d key(s), kids %s", self.url, len(keys), sorted(keys))
        return True

    async def _fetch(self) -> Any:
        assert self._session is not None, "open() the key set first"
        try:
            async with self._session.get(self.url, headers={"Accept": "application/json"}) as r:
                if r.status != 200:
                    raise JwksFetchError(f"answered {r.status}")
                body = await r.content.read(self.config.max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise JwksFetchError(f"fetch failed: {exc.__class__.__name__} {exc}") from None
        if len(body) > self.config.max_bytes:
            raise JwksFetchError(f"the key set is larger than {self.config.max_bytes} bytes")
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise JwksFetchError("the key set is not JSON (or nests too deep)") from None

    def _parse(self, document: Any) -> dict[str, list[TrustedKey]]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JwksFetchError('the key set has no "keys" list')
        keys: dict[str, list[TrustedKey]] = {}
        fingerprints: dict[str, list[TrustedKey]] = {}
        for jwk in document["keys"]:
            if not isinstance(jwk, dict):
                continue
            text = fingerprint(jwk)
            # An unchanged key keeps its identity, so tokens it verified stay cached.
            parsed = self._fingerprints.get(text) or keys_from_jwk(
                jwk, self.config.algorithms, self.url
            )
            if parsed:
                fingerprints[text] = parsed
                keys.setdefault(parsed[0].kid or "", []).extend(parsed)
        if not keys:
            raise JwksFetchError("the key set holds no usable signing key")
        self._fingerprints = fingerprints
        return keys
