"""Keystone tokens, validated at a real Keystone (from PyPI, served by gunicorn).

Validations are counted on Keystone's side, in its access log: the cache
claims (one validation per token per TTL, for the whole fleet) are checked
against what Keystone actually served.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from gateway.authn.keystone.shared_cache import SharedTokens
from gateway.demo_backend.image_store import RECEIVED, add_image
from tests.integration.keystone import Keystone, User, keystone_section
from tests.support import REPO
from tests.support.faults import assert_fault
from tests.support.gateway_config import config_data
from tests.support.observed import Observed, ObservedFactory
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory
from tests.support.waiting import seconds_until

GLANCE_POLICY = REPO / "config" / "glance-policy.yaml"
CACHE_SECRET = "a-shared-cache-secret-of-at-least-32-bytes"

MakeGateway = Callable[..., Awaitable[Observed]]


@pytest.fixture
def make_keystone_gateway(
    make_observed: ObservedFactory,
    store_server: TestServer,
    keystone: Keystone,
    gateway_service_user: User,
) -> MakeGateway:
    """A gateway trusting this Keystone (and the test JWT issuer) before the stand-in store."""

    async def make(*, sections: dict[str, Any] | None = None, **keystone: Any) -> Observed:
        section = keystone_section(keystone_server, gateway_service_user, **keystone)
        return await make_observed(
            str(store_server.make_url("")).rstrip("/"),
            auth={"keystone": section},
            authorization={"policy_file": str(GLANCE_POLICY)},
            **(sections or {}),
        )

    keystone_server = keystone
    return make


@pytest.fixture
def member(keystone: Keystone) -> User:
    return keystone.create_user(keystone.create_project(), ("member", "reader"))


def shared(redis_url: str) -> dict[str, Any]:
    return {"redis": {"url": redis_url}, "secret": CACHE_SECRET}


def shared_cache_of(observed: Observed) -> SharedTokens:
    keystone = observed.state.keystone
    assert keystone is not None
    assert keystone.shared is not None
    return keystone.shared


async def delete(observed: Observed, store_app: web.Application, user: User, token: str) -> int:
    """DELETE one of the user's project's images through the gateway: its status."""
    image = add_image(store_app, owner=user.project_id)
    response = await observed.gateway.delete(
        f"/v2/images/{image.id}", headers={"X-Auth-Token": token}
    )
    return response.status


async def test_identity_headers_as_keystonemiddleware_sets_them(
    make_keystone_gateway: MakeGateway, store_app: web.Application, keystone: Keystone, member: User
) -> None:
    observed = await make_keystone_gateway()
    token = keystone.token_of(member)
    assert await delete(observed, store_app, member, token) == 204
    sent = store_app[RECEIVED][-1].headers
    assert sent["X-Identity-Status"] == "Confirmed"
    assert sent["X-Project-Id"] == sent["X-Tenant-Id"] == member.project_id
    assert sent["X-Project-Name"] == member.project_name
    assert sent["X-Project-Domain-Id"] == "default"
    assert sent["X-Project-Domain-Name"] == "Default"
    assert sent["X-User-Id"] == member.id
    assert sent["X-User-Name"] == member.name
    assert sent["X-User-Domain-Id"] == "default"
    assert sent["X-User-Domain-Name"] == "Default"
    assert sent["X-Roles"] == "member,reader"
    assert sent["X-Is-Admin-Project"] == "True"
    for credential in ("X-Auth-Token", "X-Subject-Token", "X-Service-Token"):
        assert credential not in sent


async def test_jwt_and_keystone_tokens_are_trusted_side_by_side(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    token: TokenFactory,
) -> None:
    observed = await make_keystone_gateway()
    jwt_caller = User("u", "jwt-user", "", "project-jwt", "")
    before = keystone.validations()
    jwt_token = token(jwt_caller.project_id, "jwt-user", ["member"])
    assert await delete(observed, store_app, jwt_caller, jwt_token) == 204
    assert keystone.validations() == before, "a JWT never goes to Keystone"
    assert await delete(observed, store_app, member, keystone.token_of(member)) == 204
    assert keystone.validations() == before + 1


@pytest.mark.parametrize("concurrent", [False, True], ids=["one after another", "at once"])
async def test_many_requests_one_validation(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    concurrent: bool,
) -> None:
    """Cached after the first, or (at once) sharing the first one's look-up."""
    observed = await make_keystone_gateway()
    token = keystone.token_of(member)
    before = keystone.validations()
    requests = [delete(observed, store_app, member, token) for _ in range(20)]
    if concurrent:
        statuses = await asyncio.gather(*requests)
    else:
        statuses = [await request for request in requests]
    assert statuses == [204] * 20
    assert keystone.validations() == before + 1


async def test_an_unknown_token_is_401_and_negatively_cached(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    observed = await make_keystone_gateway()
    forged = "gAAAAAB" + secrets.token_urlsafe(160)
    before, received = keystone.validations(), len(store_app[RECEIVED])
    for _ in range(3):
        response = await observed.gateway.delete(
            f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": forged}
        )
        body = await assert_fault(response, 401, "unauthorized")
        assert "Keystone does not know the token" in body["details"]
    assert keystone.validations() == before + 1, "refused once, then from the negative cache"
    assert len(store_app[RECEIVED]) == received
    assert "Keystone does not know the token" in caplog.text


async def test_a_token_revoked_at_keystone_is_refused(
    make_keystone_gateway: MakeGateway, store_app: web.Application, keystone: Keystone, member: User
) -> None:
    observed = await make_keystone_gateway()
    token = keystone.token_of(member)
    keystone.revoke(token)  # as `openstack token revoke` does
    received = len(store_app[RECEIVED])
    image = add_image(store_app, owner=member.project_id)
    response = await observed.gateway.delete(
        f"/v2/images/{image.id}", headers={"X-Auth-Token": token}
    )
    await assert_fault(response, 401, "unauthorized")
    assert len(store_app[RECEIVED]) == received


async def test_two_gateways_on_one_redis_validate_once(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    redis_url: str,
) -> None:
    first = await make_keystone_gateway(shared_cache=shared(redis_url))
    second = await make_keystone_gateway(shared_cache=shared(redis_url))
    token = keystone.token_of(member)
    before = keystone.validations()
    for observed in [first, second] * 5:
        assert await delete(observed, store_app, member, token) == 204
    assert keystone.validations() == before + 1
    assert shared_cache_of(second).hits == 1
    # Redis holds neither the token nor anything readable of the identity.
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("igw:ks:*")
    stored = client.get(key)
    assert isinstance(key, bytes)
    assert isinstance(stored, bytes)
    for secret in (token, member.id, member.project_id, member.name):
        assert secret.encode() not in key + stored


async def test_a_replica_trusts_a_shared_entry_no_longer_than_its_writer(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    redis_url: str,
) -> None:
    writer = await make_keystone_gateway(shared_cache=shared(redis_url), cache_ttl=1)
    reader = await make_keystone_gateway(shared_cache=shared(redis_url), cache_ttl=300)
    token = keystone.token_of(member)
    before = keystone.validations()
    assert await delete(writer, store_app, member, token) == 204
    written = time.monotonic()
    assert await delete(reader, store_app, member, token) == 204
    assert keystone.validations() == before + 1, "the reader took the writer's entry"
    # The writer trusted the token for 1 s: so does the reader, whatever its own TTL.
    await asyncio.sleep(max(0.0, written + 1.2 - time.monotonic()))  # time passing is the subject
    assert await delete(reader, store_app, member, token) == 204
    assert keystone.validations() == before + 2


async def test_a_tampered_or_moved_shared_entry_is_a_miss(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    redis_url: str,
) -> None:
    other = keystone.create_user(keystone.create_project(), ("member", "reader"))
    first = await make_keystone_gateway(shared_cache=shared(redis_url))
    token, other_token = keystone.token_of(member), keystone.token_of(other)
    assert await delete(first, store_app, member, token) == 204
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("igw:ks:*")
    sealed = client.get(key)
    assert isinstance(sealed, bytes)

    client.set(key, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    second = await make_keystone_gateway(shared_cache=shared(redis_url))
    before = keystone.validations()
    assert await delete(second, store_app, member, token) == 204
    assert keystone.validations() == before + 1, "a tampered entry sends it back to Keystone"

    # The member's (valid) entry copied under the other token's key opens to nothing:
    assert await delete(first, store_app, other, other_token) == 204
    other_key = next(k for k in client.keys("igw:ks:*") if k != key)
    client.set(other_key, client.get(key) or b"")
    third = await make_keystone_gateway(shared_cache=shared(redis_url))
    assert await delete(third, store_app, other, other_token) == 204
    assert store_app[RECEIVED][-1].headers["X-User-Id"] == other.id
    assert shared_cache_of(third).tampered == 1


async def test_keystone_down_serves_cached_tokens_and_recovers(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    observed = await make_keystone_gateway(timeout=2)
    cached, uncached, later = (keystone.token_of(member) for _ in range(3))
    assert await delete(observed, store_app, member, cached) == 204
    keystone.stop()
    try:
        assert await delete(observed, store_app, member, cached) == 204
        for token in (uncached, later):
            image = add_image(store_app, owner=member.project_id)
            response = await observed.gateway.delete(
                f"/v2/images/{image.id}", headers={"X-Auth-Token": token}
            )
            await assert_fault(response, 503, "serviceUnavailable")
        outage_logs = [r for r in caplog.records if "keystone unavailable" in r.getMessage()]
        assert len(outage_logs) == 1, "logged once per interval"
        assert (
            await observed.sample("gateway_keystone_validations_total", outcome="unavailable") == 2
        )
        # Cached tokens still work, on every replica alike: degraded, still ready.
        ready = await observed.admin.get("/readyz")
        body = await ready.json()
        assert (ready.status, body["status"]) == (200, "degraded")
        check = body["checks"]["keystone"]
        assert (check["ok"], check["status"]) == (False, "degraded")
    finally:
        keystone.start()
    assert await delete(observed, store_app, member, uncached) == 204
    ready = await observed.admin.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert "service token valid" in (await ready.json())["checks"]["keystone"]["detail"]


async def test_the_service_token_is_obtained_again_after_a_401(
    make_keystone_gateway: MakeGateway, store_app: web.Application, keystone: Keystone, member: User
) -> None:
    observed = await make_keystone_gateway()
    gateway_keystone = observed.state.keystone
    assert gateway_keystone is not None
    issued_before = keystone.issued()
    keystone.revoke(await gateway_keystone.client.service_token())
    assert await delete(observed, store_app, member, keystone.token_of(member)) == 204
    # The user's token (1) and the gateway's new service token (1).
    assert keystone.issued() == issued_before + 2
    assert gateway_keystone.client.service_token_issued == 2


async def test_the_service_token_is_renewed_before_it_expires(
    make_keystone_gateway: MakeGateway, store_app: web.Application, keystone: Keystone, member: User
) -> None:
    # Keystone's tokens live an hour: renewing two hours ahead renews on every use.
    observed = await make_keystone_gateway(service_token_renew_before=7200)
    gateway_keystone = observed.state.keystone
    assert gateway_keystone is not None
    assert gateway_keystone.client.service_token_issued == 1
    for _ in range(3):
        assert await delete(observed, store_app, member, keystone.token_of(member)) == 204
    assert gateway_keystone.client.service_token_issued == 4


async def test_the_service_token_expires_and_is_renewed_without_a_failed_request(
    make_keystone_gateway: MakeGateway, store_app: web.Application, keystone: Keystone, member: User
) -> None:
    # The gateway's Keystone gives 6-second tokens (the user's, from the
    # other Keystone process, lives an hour); with a 0.3 s cache the user's
    # token is validated again and again with whatever service token the
    # gateway holds, until the first one has expired.
    sibling = keystone.start_sibling(free_port(), token_expiration=6)
    try:
        observed = await make_keystone_gateway(
            auth_url=f"{sibling.url}/v3",
            interface=None,
            cache_ttl=0.3,
            service_token_renew_before=2,
        )
        client = observed.state.keystone
        assert client is not None
        first_expiry = client.client.service_token_expires_at
        assert first_expiry is not None
        assert first_expiry - time.time() < 7
        token = keystone.token_of(member)
        statuses = []
        while time.time() < first_expiry + 1:
            statuses.append(await delete(observed, store_app, member, token))
            # Requests spread over the token's life: time passing is the subject.
            await asyncio.sleep(0.2)
        assert set(statuses) == {204}, statuses
        assert client.client.service_token_issued == 2
        renewed_expiry = client.client.service_token_expires_at
        assert renewed_expiry is not None
        assert renewed_expiry > first_expiry
        assert sibling.validations() >= len(statuses) // 2, "validated at Keystone throughout"
    finally:
        sibling.stop()


async def test_x_service_token_is_validated_and_sent_as_x_service_headers(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    gateway_service_user: User,
) -> None:
    observed = await make_keystone_gateway(service_tokens=True)
    service_token = keystone.token_of(gateway_service_user)
    image = add_image(store_app, owner=member.project_id)
    response = await observed.gateway.delete(
        f"/v2/images/{image.id}",
        headers={"X-Auth-Token": keystone.token_of(member), "X-Service-Token": service_token},
    )
    assert response.status == 204, await response.text()
    sent = store_app[RECEIVED][-1].headers
    assert sent["X-Service-Identity-Status"] == "Confirmed"
    assert sent["X-Service-User-Id"] == gateway_service_user.id
    assert sent["X-Service-Project-Id"] == gateway_service_user.project_id
    assert sent["X-Service-Roles"] == "service"
    assert sent["X-Service-User-Name"] == gateway_service_user.name
    assert sent["X-User-Id"] == member.id

    received = len(store_app[RECEIVED])
    image = add_image(store_app, owner=member.project_id)
    response = await observed.gateway.delete(
        f"/v2/images/{image.id}",
        headers={"X-Auth-Token": keystone.token_of(member), "X-Service-Token": "gAAAAAnope"},
    )
    body = await assert_fault(response, 401, "unauthorized")
    assert body["details"].startswith("X-Service-Token:")
    assert len(store_app[RECEIVED]) == received


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("oversized", "The token is too large."),
        ("non-ascii", "The token is malformed."),
        ("malformed", "The token is malformed."),
        ("unscoped", "The token is not scoped to a project."),
    ],
)
async def test_bad_tokens_are_401_with_a_reason_and_reach_nothing(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    reason: str,
) -> None:
    observed = await make_keystone_gateway()
    token = {
        "oversized": "gAAAAAB" + "A" * 9000,
        "non-ascii": "gAAAAAB" + "\u00e9" * 20,
        "malformed": "gAAAAAB$%*+;<>",
        "unscoped": keystone.unscoped_token(member.name, member.password)
        if kind == "unscoped"
        else "",
    }[kind]
    before, received = keystone.validations(), len(store_app[RECEIVED])
    caplog.set_level(logging.INFO)
    image = add_image(store_app, owner=member.project_id)
    response = await observed.gateway.delete(
        f"/v2/images/{image.id}", headers={"X-Auth-Token": token.encode().decode("latin-1")}
    )
    body = await assert_fault(response, 401, "unauthorized")
    assert body["details"] == reason
    assert reason in caplog.text
    assert not any(r.exc_info for r in caplog.records), "no traceback"
    assert len(store_app[RECEIVED]) == received
    assert keystone.validations() == before + (kind == "unscoped")


async def test_metrics_count_validations_cache_hits_and_latency(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    redis_url: str,
) -> None:
    first = await make_keystone_gateway(shared_cache=shared(redis_url))
    second = await make_keystone_gateway(shared_cache=shared(redis_url))
    token = keystone.token_of(member)
    for observed in (first, first, first, second):
        assert await delete(observed, store_app, member, token) == 204
    assert await first.sample("gateway_keystone_validations_total", outcome="valid") == 1
    assert await first.sample("gateway_keystone_token_cache_lookups_total", result="local_hit") == 2
    assert (
        await second.sample("gateway_keystone_token_cache_lookups_total", result="shared_hit") == 1
    )
    assert await second.sample("gateway_keystone_validations_total", outcome="valid") == 0
    # The service token at start and one validation, timed.
    assert await first.sample("gateway_keystone_request_duration_seconds_count") == 2
    assert await first.sample("gateway_keystone_service_tokens_total") == 1

    # The dashboard's overview shows the same.
    overview = await first.api("/api/overview")
    stats = overview["keystone"]
    assert stats["validations"] == {"valid": 1, "refused": 0, "unavailable": 0}
    assert (stats["local_hits"], stats["shared_hits"]) == (2, 0)
    assert stats["mean_latency_ms"] > 0
    assert overview["health"]["checks"]["keystone"]["ok"] is True
    page = await (await first.admin.get("/")).text()
    assert 'id="health-keystone"' in page
    assert "1 validated" in page
    assert "cache hits 2 local, 0 shared" in page


def _config_file(tmp_path: Path, keys: Keys, section: dict[str, Any], redis_url: str) -> Path:
    data = config_data(
        "http://127.0.0.1:9",
        keys,
        auth={"keystone": section},
        revocation={"store": "redis", "redis": {"url": redis_url}},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("whom", ["token", "user", "project"])
async def test_cli_revoke_beats_the_cache_on_every_gateway_within_a_second(
    make_keystone_gateway: MakeGateway,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
    gateway_service_user: User,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    whom: str,
) -> None:
    section = keystone_section(keystone, gateway_service_user, shared_cache=shared(redis_url))
    sections = {"revocation": {"store": "redis", "redis": {"url": redis_url}}}
    gateways = [
        await make_keystone_gateway(sections=sections, shared_cache=shared(redis_url))
        for _ in range(2)
    ]
    token = keystone.token_of(member)
    for observed in gateways:
        assert await delete(observed, store_app, member, token) == 204  # cached everywhere
    subject = {"token": token, "user": member.id, "project": member.project_id}[whom]
    config = _config_file(tmp_path, keys, section, redis_url)
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "revoke",
        "--config",
        str(config),
        f"--{whom}",
        subject,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await cli.communicate()
    assert cli.returncode == 0, stderr.decode()
    assert token not in stdout.decode()

    async def refused_everywhere() -> bool:
        return [await delete(g, store_app, member, token) for g in gateways] == [401, 401]

    await seconds_until(refused_everywhere, "the refusal on every gateway", deadline=1.0)
    # Only whom it names: another project's user goes on.
    other = keystone.create_user(keystone.create_project(), ("member", "reader"))
    assert await delete(gateways[0], store_app, other, keystone.token_of(other)) == 204


@pytest.fixture
def config_file(
    tmp_path: Path,
    keys: Keys,
    store_server: TestServer,
    redis_url: str,
    keystone: Keystone,
    gateway_service_user: User,
) -> Path:
    """What `gateway_pair` runs: Keystone tokens, cached and revoked through Redis."""
    section = keystone_section(keystone, gateway_service_user, shared_cache=shared(redis_url))
    data = config_data(
        str(store_server.make_url("")).rstrip("/"),
        keys,
        auth={"keystone": section},
        authorization={"policy_file": str(GLANCE_POLICY)},
        revocation={"store": "redis", "redis": {"url": redis_url}},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_two_gateway_processes_validate_once_and_revoke_within_a_second(
    gateway_pair: list[str],
    config_file: Path,
    store_app: web.Application,
    keystone: Keystone,
    member: User,
) -> None:
    token = keystone.token_of(member)

    async def status_at(session: ClientSession, url: str) -> int:
        image = add_image(store_app, owner=member.project_id)
        try:
            async with session.delete(
                f"{url}/v2/images/{image.id}", headers={"X-Auth-Token": token}
            ) as response:
                return response.status
        except OSError:
            return 0  # not listening yet

    async with ClientSession() as session:
        before = keystone.validations()
        statuses = [await status_at(session, url) for url in gateway_pair * 10]
        assert statuses == [204] * 20
        assert keystone.validations() == before + 1, "one validation for the whole fleet"

        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "revoke",
            "--config",
            str(config_file),
            "--token",
            token,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, stderr = await cli.communicate()
        assert cli.returncode == 0, stderr.decode()

        async def refused_everywhere() -> bool:
            return [await status_at(session, url) for url in gateway_pair] == [401, 401]

        await seconds_until(refused_everywhere, "the refusal on every gateway", deadline=1.0)
