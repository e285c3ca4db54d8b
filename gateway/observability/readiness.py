"""Readiness: may a load balancer send this gateway traffic?

Each dependency is its own check, reported separately so an operator sees
which one failed. On shutdown ``draining`` is set before anything else
stops, so ``/readyz`` turns false while in-flight requests still finish.

Readiness says whether *this* process can serve. A shared dependency that
fails open (the limiter's Redis with ``rate_limit.failure_mode: open``, the
revocations' Redis with ``revocation.failure_mode: open``, Keystone while
cached tokens still work) is down for every replica at once: were it to
fail readiness, a Redis restart would take every replica out of the load
balancer together, the outage failing open exists to prevent. Its check is
reported ``degraded`` and the process stays ready, unless the operator names
it in ``admin.readiness.required``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
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
    # Ok, but serving in a lesser way: what another process reported of a
    # dependency that fails open.
    degraded: bool = False


def checks_failing_open(config: GatewayConfig) -> frozenset[str]:
    """The checks whose failure leaves this process serving: reported degraded, not unready."""
    failing_open = {"keystone"}
    if config.rate_limit.failure_mode == "open":
        failing_open.add("redis")
    if config.revocation.failure_mode == "open":
        failing_open.add("revocation")
    return frozenset(failing_open.difference(config.admin.readiness.required))


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
    its subscription may be honouring a token revoked since (it still applies
    every revocation it knew)."""

    name = "revocation"

    def __init__(self, store: RedisRevocationStore) -> None:
        self.store = store

    async def __call__(self) -> ReadinessResult:
        known = len(self.store.revocations)
        if self.store.synced.is_set():
            return ReadinessResult(True, f"{known} revocation(s), following")
        since = self.store.outage.since
        lost = "" if since is None else f" for {time.monotonic() - since:.0f} s"
        return ReadinessResult(
            False, f"not synced with Redis{lost}; resyncing; the {known} known still apply"
        )


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
    def __init__(
        self,
        checks: Sequence[ReadinessCheck],
        timeout: float,
        failing_open: Collection[str] = (),
    ) -> None:
        self.checks = list(checks)
        self.timeout = timeout
        # Names of the checks that degrade rather than fail (checks_failing_open).
        self.failing_open = frozenset(failing_open)
        self.draining = False

    def add(self, check: ReadinessCheck) -> None:
        self.checks.append(check)

    async def _run(self, check: ReadinessCheck) -> ReadinessResult:
        try:
            async with asyncio.timeout(self.timeout):
                return await check()
        except TimeoutError:
            return ReadinessResult(False, f"no answer within {self.timeout:g}s")

    def _status(self, name: str, result: ReadinessResult) -> str:
        if result.ok:
            return "degraded" if result.degraded else "ok"
        return "degraded" if name in self.failing_open else "failed"

    async def report(self) -> dict[str, Any]:
        """``status``: ready, degraded (ready, some shared dependency failing
        open), unready, or draining; each check's ``status``: ok, degraded or failed."""
        results = await asyncio.gather(*(self._run(check) for check in self.checks))
        checks = {
            check.name: {
                "ok": result.ok,
                "status": self._status(check.name, result),
                "detail": result.detail,
            }
            for check, result in zip(self.checks, results, strict=True)
        }
        statuses = {check["status"] for check in checks.values()}
        ready = not self.draining and "failed" not in statuses
        if self.draining:
            status = "draining"
        elif not ready:
            status = "unready"
        else:
            status = "degraded" if "degraded" in statuses else "ready"
        return {"ready": ready, "status": status, "draining": self.draining, "checks": checks}
