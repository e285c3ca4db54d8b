"""Keystone tokens: at most one validation per token per cache TTL, for the whole fleet.

Looked up first in this process's LRU, then in the shared Redis cache, then
at Keystone; concurrent requests with the same uncached token wait on one
look-up (single flight). A token is trusted until min(its expiry,
``cache_ttl``); one Keystone refused is refused for ``negative_cache_ttl``
without asking. Revocations (``image-gateway revoke``) are checked on every
request, after the caches, so none outlives its writing by more than the
revocation list's own propagation.

Keystone failing is not a verdict: nothing is cached, the caller gets
KeystoneUnavailable (503), and tokens already cached go on working.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time

from gateway.authn.identity import Identity
from gateway.authn.keystone.client import KeystoneClient, KeystoneUnavailable
from gateway.authn.keystone.sealing import TokenSealer
from gateway.authn.keystone.shared_cache import REFUSED, VALID, SharedTokens
from gateway.authn.keystone.token_body import (
    KeystoneToken,
    from_record,
    parse_token_body,
    to_record,
)
from gateway.authn.revocation import RevocationList
from gateway.authn.tokens import InvalidToken, refuse_if_revoked
from gateway.config import KeystoneConfig
from gateway.expiring_lru import ExpiringLRU
from gateway.observability.outages import Outage

log = logging.getLogger("gateway.keystone")

# Fernet is URL-safe base64; JWS (Keystone's other format) adds dots.
_KEYSTONE_TOKEN = re.compile(r"\A[A-Za-z0-9\-_=.]+\Z")
# A refusal cached locally: the reason, kept as the entry.
Entry = KeystoneToken | str


class KeystoneTokens:
    """Keystone tokens, validated at Keystone: a TokenVerifier (gateway.authn.verifier)."""

    def __init__(
        self,
        config: KeystoneConfig,
        revocations: RevocationList,
        *,
        max_token_bytes: int,
        client: KeystoneClient | None = None,
    ) -> None:
        self.config = config
        self.revocations = revocations
        self.max_token_bytes = max_token_bytes
        shared = config.shared_cache
        self.sealer = TokenSealer(
            None if shared is None else shared.secret.get_secret_value().encode()
        )
        self.client = client or KeystoneClient(config)
        self.shared = None if shared is None else SharedTokens(shared, self.sealer)
        self.local: ExpiringLRU[bytes, Entry] = ExpiringLRU(config.cache_size)
        self._in_flight: dict[bytes, asyncio.Future[Entry]] = {}
        # Logged as it begins, once per interval with a count, and as it ends.
        self.outages = Outage("keystone", log, config.failure_log_interval, level=logging.ERROR)
        # Verdicts Keystone gave (valid / refused); cache hits are counted by the caches.
        self.accepted = 0
        self.refused = 0

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()
        if self.shared is not None:
            await self.shared.close()

    def digest(self, token: str) -> bytes:
        return self.sealer.digest(token)

    def claims(self, token: str) -> bool:
        # Fernet never holds a dot. Keystone's JWS tokens have a JWT's shape:
        # they are Keystone's to decide when no JWT issuer is trusted, and
        # then this verifier decides every token without being asked.
        return token.count(".") != 2

    async def verify(self, token: str) -> Identity:
        return (await self.inspect(token)).identity

    async def inspect(self, token: str) -> KeystoneToken:
        if len(token) > self.max_token_bytes:
            raise InvalidToken("The token is too large.")
        digest = self.sealer.digest(token)
        now = time.time()
        entry = self.local.get(digest, now)
        if entry is None:
            # Only a token that passed this was ever cached: checked on a miss.
            if not _KEYSTONE_TOKEN.match(token):
                raise InvalidToken("The token is malformed.")
            entry = await self._single_flight(digest, token)
        if isinstance(entry, str):
            raise InvalidToken(entry)
        refuse_if_revoked(
            self.revocations, entry.identity, entry.issued_at, now, token=digest.hex()
        )
        return entry

    async def _single_flight(self, digest: bytes, token: str) -> Entry:
        flight = self._in_flight.get(digest)
        if flight is None:
            flight = asyncio.ensure_future(self._look_up(digest, token))
            self._in_flight[digest] = flight
            flight.add_done_callback(lambda _: self._in_flight.pop(digest, None))
        # Shielded: one caller giving up does not cancel the others' look-up.
        return await asyncio.shield(flight)

    async def _look_up(self, digest: bytes, token: str) -> Entry:
        if self.shared is not None:
            opened = await self.shared.get(digest)
            found = _decode(opened) if opened is not None else None
            if found is not None:
                # Trusted until the first replica's deadline, not a new one.
                entry, until = found
                self.local.put(digest, entry, until)
                return entry
        try:
            entry = parse_token_body(await self.client.validate(token))
            self.accepted += 1
        except InvalidToken as exc:
            entry = str(exc)
            self.refused += 1
            log.info("keystone refused a token: %s", exc)
        except KeystoneUnavailable as exc:
            self.outages.failed(str(exc))
            raise
        # A verdict, valid or not: Keystone answers.
        self.outages.recovered()
        now = time.time()
        until = self._expiry(entry, now)
        self.local.put(digest, entry, until)
        if self.shared is not None:
            await self.shared.put(digest, _encode(entry, until), until - now)
        return entry

    def _expiry(self, entry: Entry, now: float) -> float:
        if isinstance(entry, str):
            return now + self.config.negative_cache_ttl
        return min(entry.expires_at, now + self.config.cache_ttl)


_UNTIL = struct.Struct("!d")


def _encode(entry: Entry, until: float) -> bytes:
    """The kind, the moment the entry stops being trusted, then the entry."""
    kind, data = (REFUSED, entry.encode()) if isinstance(entry, str) else (VALID, to_record(entry))
    return kind + _UNTIL.pack(until) + data


def _decode(opened: bytes) -> tuple[Entry, float] | None:
    kind, data = opened[:1], opened[1 + _UNTIL.size :]
    try:
        (until,) = _UNTIL.unpack(opened[1 : 1 + _UNTIL.size])
        if kind == REFUSED:
            return data.decode(), until
        if kind == VALID:
            return from_record(data), until
    except (ValueError, struct.error) as exc:
        log.warning("keystone: an unreadable shared cache entry was ignored: %s", exc)
    return None
