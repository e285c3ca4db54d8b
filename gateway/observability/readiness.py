"""Readiness: may a load balancer send this gateway traffic?

Each dependency is its own check, reported separately so an operator sees
which one failed. On shutdown ``draining`` is set before anything else
stops, so ``/readyz`` turns false while in-flight requests still finish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from gateway.authn.keystone.client import KeystoneClient, KeystoneUnavailable
from gateway.authn.revocation import RedisRevocationStore
from gateway.config import GatewayConfig
from gateway.http.client import UpstreamError
from gateway.http.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class ReadinessResult:
    ok: bool
    detail: str


class ReadinessCheck(Protocol):
    name: str

    async def __call__(self) -> ReadinessResult: ...


class ConfigLoaded:
    name = "config"

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    async def __call__(self) -> ReadinessResult:
        # A config that failed validation never gets this far: being here
        # is the proof; the detail says which one is running.
        rules = len(self.config.rate_limit.rules)
        return ReadinessResult(
            True, f"upstream {self.config.upstream.url}, {rules} rate-limit rule(s)"
        )


class KeysLoaded:
    name = "keys"

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    async def __call__(self) -> ReadinessResult:
        count = self._count()
        return ReadinessResult(count > 0, f"{count} verification key(s) loaded")


class RevocationSynced:
    """Revocations shared through Redis are current: a process that has lost
    its subscription may be honouring a token revoked since."""

    name = "revocation"

    def __init__(self, store: RedisRevocationStore) -> None:
        self.store = store

    async def __call__(self) -> ReadinessResult:
        if self.store.synced.is_set():
            return ReadinessResult(True, f"{len(self.store.revocations)} revocation(s), following")
        return ReadinessResult(False, "not synced with Redis; resyncing")


class UpstreamReachable:
    name = "upstream"

    def __init__(self, upstream: UpstreamClient) -> None:
        self.upstream = upstream

    async def __call__(self) -> ReadinessResult:
        # Any HTTP answer means the backend is up; Glance answers its root
        # with the version list.
        try:
            status = await self.upstream.probe()
        except UpstreamError as exc:
            return ReadinessResult(False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        return ReadinessResult(status < 500, f"GET / answered {status}")


class KeystoneReachable:
    """Keystone answers, and the gateway holds a service token (obtaining one if it has none)."""

    name = "keystone"

    def __init__(self, client: KeystoneClient) -> None:
        self.client = client

    async def __call__(self) -> ReadinessResult:
        try:
            await self.client.service_token()
            async with self.client.session.get(self.client.config.auth_url + "/v3") as response:
                if response.status >= 500:
                    return ReadinessResult(False, f"GET /v3 answered {response.status}")
        except KeystoneUnavailable as exc:
            return ReadinessResult(False, f"no service token: {exc}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ReadinessResult(False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        expires_at = self.client.service_token_expires_at
        assert expires_at is not None
        left = expires_at - time.time()
        return ReadinessResult(
            True, f"GET /v3 answered {response.status}; service token valid {left:.0f} s more"
        )


class RedisReachable:
    name = "redis"

    def __init__(self, client: aioredis.Redis | RedisCluster) -> None:
        self.client = client

    async def __call__(self) -> ReadinessResult:
        try:
            await self.client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return ReadinessResult(False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        return ReadinessResult(True, "PING answered")


class Readiness:
    def __init__(self, checks: Sequence[ReadinessCheck], timeout: float) -> None:
        self.checks = list(checks)
        self.timeout = timeout
        self.draining = False

    def add(self, check: ReadinessCheck) -> None:
        self.checks.append(check)

    async def _run(self, check: ReadinessCheck) -> ReadinessResult:
        try:
            async with asyncio.timeout(self.timeout):
                return await check()
        except TimeoutError:
            return ReadinessResult(False, f"no answer within {self.timeout:g}s")

    async def report(self) -> dict[str, Any]:
        results = await asyncio.gather(*(self._run(check) for check in self.checks))
        checks = {
            check.name: {"ok": result.ok, "detail": result.detail}
            for check, result in zip(self.checks, results, strict=True)
        }
        ready = not self.draining and all(result.ok for result in results)
        return {"ready": ready, "draining": self.draining, "checks": checks}
