"""Revoked tokens, users and projects, checked in-process on every request.

The hot path never waits on Redis: each gateway process keeps the live
revocations in memory (``RevocationList``) and the Redis store keeps that
copy current by pub/sub, with a full resync whenever its subscription
(re)connects, so a revocation written by ``image-gateway revoke`` reaches
every process within a network round trip and none is lost to a dropped
connection. A polled version key would cost a Redis call per process per
poll interval and still lag by up to that interval; pub/sub costs nothing
while nothing is revoked.

In Redis the revocations are one sorted set scored by expiry, pruned on
every write and every resync, so an entry lives exactly as long as the
token it refuses (one key, so a Redis Cluster holds it in one slot).

While Redis cannot be reached the process keeps checking against the
revocations it last knew, retrying every ``redis.probe_interval`` at most;
the outage is logged once when it begins and once when it ends, and
counted. A resync adds what Redis holds to what the process knows, so a
Redis restarted empty does not undo a revocation made before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, get_args

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.config import RedisConfig, RevocationConfig
from gateway.observability.outages import Outage

log = logging.getLogger("gateway.authn.revocation")

# "token": a Keystone token, by its keyed hash (it has no jti).
Kind = Literal["jti", "token", "user", "project"]
KINDS: tuple[Kind, ...] = get_args(Kind)


@dataclass(frozen=True, slots=True)
class Revocation:
    """Refuse the token with this jti, or every token of this user or project
    issued at or before ``revoked_at``; until ``expires_at``."""

    kind: Kind
    subject: str
    revoked_at: float
    expires_at: float

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "subject": self.subject, "revoked_at": self.revoked_at},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, expires_at: float) -> Revocation:
        data = json.loads(text)
        if (
            not isinstance(data, dict)
            or data.get("kind") not in KINDS
            or not isinstance(data.get("subject"), str)
        ):
            raise ValueError(f"not a revocation: {text!r}")
        return cls(data["kind"], data["subject"], float(data["revoked_at"]), expires_at)


class RevocationList:
    """The in-process copy every request is checked against."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Kind, str], Revocation] = {}

    def add(self, revocation: Revocation) -> None:
        key = (revocation.kind, revocation.subject)
        known = self._entries.get(key)
        if known is not None:
            # The later revocation and the longer life win.
            revocation = Revocation(
                revocation.kind,
                revocation.subject,
                max(known.revoked_at, revocation.revoked_at),
                max(known.expires_at, revocation.expires_at),
            )
        self._entries[key] = revocation

    def prune(self, now: float) -> None:
        self._entries = {k: r for k, r in self._entries.items() if r.expires_at > now}

    def reason_refused(
        self,
        *,
        jti: str | None,
        token: str | None = None,
        user: str,
        project: str,
        issued_at: float | None,
        now: float,
    ) -> str | None:
        """Why the token is revoked, or None. A token without iat is older than any revocation."""
        for kind, subject in (("jti", jti), ("token", token), ("user", user), ("project", project)):
            if subject is None:
                continue
            entry = self._entries.get((kind, subject))  # type: ignore[arg-type]
            if entry is None or entry.expires_at <= now:
                continue
            if kind in ("jti", "token") or issued_at is None or issued_at <= entry.revoked_at:
                return f"its {kind} was revoked"
        return None

    def missing_from(self, members: set[str]) -> list[Revocation]:
        """The revocations held here whose stored form is not in ``members``."""
        return [r for r in self._entries.values() if r.to_json() not in members]

    def __len__(self) -> int:
        return len(self._entries)


class RevocationStore(Protocol):
    revocations: RevocationList

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def revoke(self, revocation: Revocation) -> None: ...


class MemoryRevocationStore:
    """Revocations for this process only."""

    def __init__(self) -> None:
        self.revocations = RevocationList()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def revoke(self, revocation: Revocation) -> None:
        self.revocations.prune(time.time())
        self.revocations.add(revocation)


class RedisRevocationStore:
    """Revocations shared by every gateway process through Redis."""

    def __init__(self, config: RedisConfig) -> None:
        assert config.url is not None, "RevocationConfig admits only a plain url"
        self.key = f"{config.key_prefix}:revoked"
        self.channel = f"{config.key_prefix}:revocations"
        self.revocations = RevocationList()
        self.client: aioredis.Redis = aioredis.from_url(
            config.url, socket_timeout=config.timeout, socket_connect_timeout=config.timeout
        )
        # The subscription waits for messages indefinitely, so no read
        # timeout; a health-check PING finds a dead connection instead.
        self._subscriber: aioredis.Redis = aioredis.from_url(
            config.url, socket_connect_timeout=config.timeout, health_check_interval=5
        )
        self._follower: asyncio.Task[None] | None = None
        self._retry_max = config.probe_interval
        self.synced = asyncio.Event()
        self.resyncs = 0
        # From the first failure to the next resync, however many attempts
        # it took: one outage, logged as it begins, at most once per
        # interval while it lasts, and as it ends.
        self.outage = Outage("Redis (revocations)", log)

    async def open(self) -> None:
        """Follow the channel; wait briefly for the first sync so a fresh process starts current."""
        self._follower = asyncio.create_task(self._follow())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.synced.wait(), timeout=2.0)
        if not self.synced.is_set():
            log.error("revocations: no sync from Redis yet; retrying in the background")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self._subscriber.aclose()
        await self.client.aclose()

    async def revoke(self, revocation: Revocation) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.key, "-inf", time.time())
            pipe.zadd(self.key, {revocation.to_json(): revocation.expires_at}, gt=True)
            pipe.publish(self.channel, json.dumps([revocation.to_json(), revocation.expires_at]))
            await pipe.execute()
        self.revocations.add(revocation)

    async def _resync(self) -> None:
        now = time.time()
        await self.client.zremrangebyscore(self.key, "-inf", now)
        members = cast(
            list[tuple[bytes, float]],
            await self.client.zrangebyscore(self.key, now, "+inf", withscores=True),
        )
        for member, score in members:
            revocation = _parse(member, score)
            if revocation is not None:
                self.revocations.add(revocation)
        self.revocations.prune(now)
        await self._restore(self.revocations.missing_from({m.decode() for m, _ in members}))
        self.resyncs += 1
        self.outage.recovered(f"resynced, {len(self.revocations)} revocation(s)")

    async def _restore(self, missing: list[Revocation]) -> None:
        """Write back what this process knows and Redis lost (restarted
        empty, or failed over to a replica that never had it), and tell every
        process: otherwise one started since would let a revoked token in."""
        if not missing:
            return
        async with self.client.pipeline(transaction=True) as pipe:
            for revocation in missing:
                member = revocation.to_json()
                pipe.zadd(self.key, {member: revocation.expires_at}, gt=True)
                pipe.publish(self.channel, json.dumps([member, revocation.expires_at]))
            await pipe.execute()
        log.warning(
            "revocations: Redis had lost %d revocation(s) this process knows; written back",
            len(missing),
        )

    def _lost(self, reason: str) -> None:
        """Following Redis failed: logged when an outage begins, counted always."""
        self.synced.clear()
        self.outage.failed(
            f"{reason}; the {len(self.revocations)} revocation(s) known keep applying"
            " until it is back"
        )

    async def _follow(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # Subscribed first, then read the set: nothing falls in between.
                await self._resync()
                self.synced.set()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._apply(message["data"])
            except (RedisError, OSError) as exc:
                self._lost(str(exc) or type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._retry_max)
            except Exception:
                # A bug must not leave the process on a stale list for good.
                log.exception("revocations: unexpected failure; resyncing")
                self._lost("an unexpected failure")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._retry_max)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _apply(self, data: bytes) -> None:
        try:
            member, expires_at = json.loads(data)
        except (ValueError, TypeError):
            member, expires_at = data, None
        revocation = _parse(member, expires_at)
        if revocation is not None:
            self.revocations.add(revocation)


def _parse(member: str | bytes, expires_at: Any) -> Revocation | None:
    """A revocation read from Redis; anything else written there is logged and skipped."""
    try:
        return Revocation.from_json(member, float(expires_at))
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("revocations: ignored a malformed entry %.100r: %s", member, exc)
        return None


def revocation_for(
    kind: Kind,
    subject: str,
    config: RevocationConfig,
    *,
    expires_at: float | None = None,
    ttl: float | None = None,
    now: float | None = None,
) -> Revocation:
    """A revocation from now until the token's expiry, or for ``ttl`` / ``max_ttl`` seconds.

    Never longer than ``max_ttl``; never for a token already expired.
    """
    now = time.time() if now is None else now
    if not subject:
        raise ValueError(f"the {kind} to revoke is empty")
    if ttl is not None and ttl <= 0:
        raise ValueError("--ttl must be positive")
    until = now + min(ttl if ttl is not None else config.max_ttl, config.max_ttl)
    if expires_at is not None:
        if expires_at <= now:
            raise ValueError("the token has already expired; nothing to revoke")
        until = min(until, expires_at)
    return Revocation(kind, subject, now, until)


def make_revocation_store(config: RevocationConfig) -> RevocationStore:
    if config.store == "redis":
        assert config.redis is not None
        return RedisRevocationStore(config.redis)
    return MemoryRevocationStore()
