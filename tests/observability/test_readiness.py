"""Readiness checks one by one, and the report a load balancer reads.

The probes' end-to-end tests (tests/admin/test_probes.py) show /readyz
through the admin listener; these hold each check to its own rule: any
answer below 500 from the backend is up, 5xx is not, no key is not ready,
a draining process is never ready, and a check that hangs is a failure.

Readiness says whether *this* process can serve: a shared dependency that
fails open is degraded with a 200, never a 503, unless the operator requires
it. The fleet tests run three ``python -m gateway run`` processes on one
real redis-server (rate limits and revocations both in it, as the shipped
configuration has them), kill Redis and start it again on the same port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import UpstreamConfig, parse_config
from gateway.demo_backend.image_store import add_image
from gateway.http.upstream import UpstreamClient
from gateway.observability.readiness import (
    KeysLoaded,
    Readiness,
    ReadinessResult,
    UpstreamReachable,
    checks_failing_open,
)
from tests.authn.test_revocation import cli, jti_of
from tests.support.gateway_config import config_data, write_config
from tests.support.gateway_process import GatewayProcess, stop_all
from tests.support.observed import sample_value
from tests.support.ports import free_port
from tests.support.redis_servers import RedisProcess
from tests.support.tokens import Keys, TokenFactory
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import seconds_until, until


class Fixed:
    def __init__(self, name: str, ok: bool) -> None:
        self.name = name
        self.ok = ok

    async def __call__(self) -> ReadinessResult:
        return ReadinessResult(self.ok, "as set")


class Hangs:
    name = "stuck"

    async def __call__(self) -> ReadinessResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (300, True), (401, True), (404, True), (500, False), (503, False)],
)
async def test_the_backend_is_up_when_it_answers_below_500(
    scripted: tuple[ScriptedUpstream, str], status: int, ok: bool
) -> None:
    upstream, url = scripted
    upstream.status = status
    upstream.body = b"{}"
    client = UpstreamClient(UpstreamConfig(url=url))
    await client.open()
    try:
        result = await UpstreamReachable(client)()
    finally:
        await client.close()
    assert result == ReadinessResult(ok, f"GET / answered {status}")
    assert [r.path for r in upstream.received] == ["/"]


@pytest.mark.parametrize(("count", "ok"), [(0, False), (1, True), (3, True)])
async def test_keys_are_loaded_when_at_least_one_can_verify(count: int, ok: bool) -> None:
    assert await KeysLoaded(lambda: count)() == ReadinessResult(
        ok, f"{count} verification key(s) loaded"
    )


async def test_ready_only_when_every_check_passes() -> None:
    passing = Readiness([Fixed("a", True), Fixed("b", True)], timeout=1)
    assert (await passing.report())["ready"] is True
    failing = Readiness([Fixed("a", True), Fixed("b", False)], timeout=1)
    report = await failing.report()
    assert report["ready"] is False
    assert report["checks"] == {
        "a": {"ok": True, "status": "ok", "detail": "as set"},
        "b": {"ok": False, "status": "failed", "detail": "as set"},
    }


async def test_a_draining_process_is_never_ready() -> None:
    readiness = Readiness([Fixed("a", True)], timeout=1)
    readiness.draining = True
    report = await readiness.report()
    assert report["ready"] is False
    assert report["draining"] is True
    assert report["checks"]["a"]["ok"] is True, "the checks still say what they see"


async def test_a_check_that_does_not_answer_in_time_fails() -> None:
    readiness = Readiness([Fixed("a", True), Hangs()], timeout=0.05)
    report = await readiness.report()
    assert report["ready"] is False
    assert report["checks"]["stuck"] == {
        "ok": False,
        "status": "failed",
        "detail": "no answer within 0.05s",
    }


@dataclass
class Returns:
    name: str
    result: ReadinessResult

    async def __call__(self) -> ReadinessResult:
        return self.result


OK = ReadinessResult(True, "fine")
DOWN = ReadinessResult(False, "down")


@pytest.mark.parametrize(
    ("redis", "failing_open", "status", "ready", "redis_status"),
    [
        (OK, {"redis"}, "ready", True, "ok"),
        (DOWN, {"redis"}, "degraded", True, "degraded"),
        (DOWN, set(), "unready", False, "failed"),
        # What a worker reported as degraded stays degraded at the supervisor.
        (ReadinessResult(True, "a worker fails open", degraded=True), set(), "degraded", True,
         "degraded"),
    ],
)  # fmt: skip
async def test_a_check_failing_open_degrades_and_any_other_fails(
    redis: ReadinessResult, failing_open: set[str], status: str, ready: bool, redis_status: str
) -> None:
    readiness = Readiness(
        [Returns("upstream", OK), Returns("redis", redis)], timeout=1.0, failing_open=failing_open
    )
    report = await readiness.report()
    assert (report["status"], report["ready"]) == (status, ready)
    assert report["checks"]["redis"] == {
        "ok": redis.ok,
        "status": redis_status,
        "detail": redis.detail,
    }
    assert report["checks"]["upstream"]["status"] == "ok"
    readiness.draining = True
    assert (await readiness.report())["status"] == "draining"


@pytest.mark.parametrize(
    ("sections", "failing_open"),
    [
        ({}, {"redis", "revocation", "keystone"}),
        ({"rate_limit": {"failure_mode": "closed"}}, {"revocation", "keystone"}),
        ({"revocation": {"failure_mode": "closed"}}, {"redis", "keystone"}),
        ({"admin": {"readiness": {"required": ["keystone", "revocation"]}}}, {"redis"}),
    ],
)
def test_which_checks_fail_open_follows_the_configuration(
    keys: Keys, sections: dict[str, Any], failing_open: set[str]
) -> None:
    redis = {"store": "redis", "redis": {"url": "redis://127.0.0.1:1/0"}}
    keystone = {"auth_url": "http://127.0.0.1:1/v3",
                "application_credential": {"id": "gw", "secret": "s"}}  # fmt: skip
    data = config_data(
        "http://127.0.0.1:1",
        keys,
        rate_limit={**redis, **sections.get("rate_limit", {})},
        revocation={**redis, **sections.get("revocation", {})},
        auth={"keystone": keystone},
        admin=sections.get("admin", {}),
    )
    assert checks_failing_open(parse_config(data)) == failing_open


# --- three processes, one Redis ----------------------------------------------------------


@dataclass
class Member:
    process: GatewayProcess
    admin: str

    @property
    def url(self) -> str:
        return self.process.url


@dataclass
class Fleet:
    members: list[Member]
    session: aiohttp.ClientSession
    store_app: web.Application

    async def readiness(self, member: Member) -> tuple[int, dict[str, Any]]:
        async with self.session.get(f"{member.admin}/readyz") as response:
            return response.status, await response.json()

    async def all_are(self, status: str) -> bool:
        """Every member's /readyz says ``status`` (an admin listener not up yet says nothing)."""
        statuses = []
        for member in self.members:
            try:
                statuses.append((await self.readiness(member))[1]["status"])
            except aiohttp.ClientConnectionError:
                statuses.append("not listening")
        return statuses == [status] * len(self.members)

    async def sample(self, member: Member, name: str) -> float:
        async with self.session.get(f"{member.admin}/metrics") as response:
            return sample_value(await response.text(), name)

    async def delete(self, member: Member, tok: str) -> int:
        image = add_image(self.store_app, owner="project-a")
        async with self.session.delete(
            f"{member.url}/v2/images/{image.id}", headers={"X-Auth-Token": tok}
        ) as response:
            return response.status

    async def deletes(self, tok: str) -> list[int]:
        return [await self.delete(m, tok) for m in self.members]


def fleet_config(
    store_server: TestServer, keys: Keys, own_redis: RedisProcess, **sections: Any
) -> dict[str, Any]:
    """Rate limits and revocations in the one Redis, as config/gateway.yaml has them."""
    redis = {"store": "redis", "redis": {"url": own_redis.url}}
    return config_data(
        str(store_server.make_url("")).rstrip("/"),
        keys,
        rate_limit=redis,
        revocation={**redis, **sections.pop("revocation", {})},
        **sections,
    )


@asynccontextmanager
async def fleet_of(
    n: int, config: dict[str, Any], directory: Path, store_app: web.Application
) -> AsyncIterator[Fleet]:
    """``n`` ``python -m gateway run`` processes of ``config``, each on its own
    ports with its admin listener; stopped at the end."""
    members = []
    for i in range(n):
        admin_port = free_port()
        data = {
            **config,
            "listen": {**config.get("listen", {}), "host": "127.0.0.1", "port": free_port()},
            "admin": {"port": admin_port},
        }
        process = GatewayProcess.run(data, directory, f"gateway-{i}")
        members.append(Member(process, f"http://127.0.0.1:{admin_port}"))
    try:
        await asyncio.gather(*(m.process.start() for m in members))
        async with aiohttp.ClientSession() as session:
            yield Fleet(members, session, store_app)
    finally:
        await stop_all([m.process for m in members])


def revoke(config_file: Path, tok: str) -> None:
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    result = cli("revoke", "--config", str(config_file), "--jti", jti_of(tok),
                 "--expires-at", str(exp))  # fmt: skip
    assert result.returncode == 0, result.stderr


async def test_three_gateways_stay_ready_and_serve_through_a_redis_restart(
    own_redis: RedisProcess,
    store_server: TestServer,
    store_app: web.Application,
    keys: Keys,
    token: TokenFactory,
    tmp_path: Path,
) -> None:
    """Redis killed: all three stay ready (200, degraded) and every DELETE is a
    204 (limits counted in-process); one outage each, however many retries.
    Redis back, empty: a revocation made now applies on all three within a
    second, and the one made before the outage still applies."""
    config = fleet_config(store_server, keys, own_redis)
    config_file = write_config(tmp_path / "revoke.yaml", config)
    revoked_before, kept, revoked_after = token(), token(), token()
    async with fleet_of(3, config, tmp_path, store_app) as fleet:
        await until(lambda: fleet.all_are("ready"), "three ready gateways")
        assert await fleet.deletes(kept) == [204] * 3
        revoke(config_file, revoked_before)

        async def before_refused() -> bool:
            return await fleet.deletes(revoked_before) == [401] * 3

        await seconds_until(before_refused, "the first revocation everywhere", deadline=1.0)

        own_redis.kill()
        await until(lambda: fleet.all_are("degraded"), "three degraded gateways", deadline=10)
        for member in fleet.members:
            status, report = await fleet.readiness(member)
            assert (status, report["ready"]) == (200, True)
            assert report["checks"]["redis"]["status"] == "degraded"
            assert report["checks"]["revocation"]["status"] == "degraded"
            assert report["checks"]["upstream"]["status"] == "ok"
        assert await fleet.deletes(kept) == [204] * 3
        assert await fleet.deletes(revoked_before) == [401] * 3

        async def retried_everywhere() -> bool:
            failures = [await fleet.sample(m, "gateway_revocation_failures_total")
                        for m in fleet.members]  # fmt: skip
            return min(failures) >= 3

        await until(retried_everywhere, "three failed attempts on each", deadline=10)
        outages = [await fleet.sample(m, "gateway_revocation_outages_total") for m in fleet.members]
        assert outages == [1, 1, 1]
        for member in fleet.members:
            assert member.process.log().count("Redis (revocations) unavailable: ") == 1

        own_redis.start()
        revoke(config_file, revoked_after)

        async def after_refused() -> bool:
            return await fleet.deletes(revoked_after) == [401] * 3

        seconds = await seconds_until(after_refused, "the revocation everywhere", deadline=1.0)
        print(f"revoked on all three {seconds:.3f} s after the command, Redis restarted")
        assert await fleet.deletes(revoked_before) == [401] * 3
        assert await fleet.deletes(kept) == [204] * 3
        await until(lambda: fleet.all_are("ready"), "three ready gateways again", deadline=10)


async def test_unready_when_the_revocations_fail_closed(
    own_redis: RedisProcess,
    store_server: TestServer,
    store_app: web.Application,
    keys: Keys,
    tmp_path: Path,
) -> None:
    """The behaviour before failing open, for an operator who wants it."""
    config = fleet_config(store_server, keys, own_redis, revocation={"failure_mode": "closed"})
    async with fleet_of(1, config, tmp_path, store_app) as fleet:
        await until(lambda: fleet.all_are("ready"), "a ready gateway")
        own_redis.kill()
        await until(lambda: fleet.all_are("unready"), "an unready gateway", deadline=10)
        status, report = await fleet.readiness(fleet.members[0])
        assert status == 503
        assert report["checks"]["revocation"]["status"] == "failed"
        assert "not synced with Redis" in report["checks"]["revocation"]["detail"]
        # The limiter's Redis, failing open, is only degraded.
        assert report["checks"]["redis"]["status"] == "degraded"
        own_redis.start()
        await until(lambda: fleet.all_are("ready"), "a ready gateway again", deadline=10)


async def test_several_workers_report_a_revocation_failing_open_as_degraded(
    own_redis: RedisProcess,
    store_server: TestServer,
    store_app: web.Application,
    keys: Keys,
    token: TokenFactory,
    tmp_path: Path,
) -> None:
    """Two workers: the supervisor's /readyz carries what each worker reports
    of its revocations, degraded, and stays 200."""
    config = fleet_config(store_server, keys, own_redis, listen={"workers": 2})
    async with fleet_of(1, config, tmp_path, store_app) as fleet:
        await until(lambda: fleet.all_are("ready"), "a ready gateway")
        own_redis.kill()
        await until(lambda: fleet.all_are("degraded"), "a degraded gateway", deadline=15)

        async def both_workers_degraded() -> bool:
            check = (await fleet.readiness(fleet.members[0]))[1]["checks"]["worker_checks"]
            return bool(check["detail"].count("revocation: not synced with Redis") == 2)

        # Each worker reports once a second: both have, and it says so.
        await until(both_workers_degraded, "both workers' reports", deadline=15)
        status, report = await fleet.readiness(fleet.members[0])
        assert (status, report["status"]) == (200, "degraded")
        assert report["checks"]["worker_checks"]["status"] == "degraded"
        assert report["checks"]["redis"]["status"] == "degraded"
        assert report["checks"]["workers"]["status"] == "ok"
        assert await fleet.deletes(token()) == [204]
