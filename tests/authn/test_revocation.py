"""Revocation: refused on every gateway process within a second, from the CLI,
with no Redis round trip per request, and expiring with the token."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
import yaml
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from gateway.app import GATEWAY
from gateway.authn.revocation import (
    RedisRevocationStore,
    Revocation,
    RevocationList,
    revocation_for,
)
from gateway.config import RedisConfig, RevocationConfig
from gateway.demo_backend.image_store import add_image
from gateway.observability.readiness import RevocationSynced
from tests.support import REPO
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.ports import free_port
from tests.support.redis_servers import RedisProcess
from tests.support.tokens import Keys, TokenFactory
from tests.support.waiting import seconds_until


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True
    )


async def status(client: Client, store_app: web.Application, tok: str) -> int:
    image = add_image(store_app, owner="project-a")
    response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    return response.status


def jti_of(tok: str) -> str:
    return str(jwt.decode(tok, options={"verify_signature": False})["jti"])


async def test_in_process_store_refuses_a_cached_token_at_once(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    assert gateway.app is not None
    store = gateway.app[GATEWAY].revocations
    stolen, other = token(), token()
    assert await status(gateway, store_app, stolen) == 204  # now in the verified-token cache
    now = time.time()
    await store.revoke(Revocation("jti", jti_of(stolen), now, now + 600))
    assert await status(gateway, store_app, stolen) == 401
    assert await status(gateway, store_app, other) == 204


async def test_user_revocation_refuses_older_tokens_not_newer(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    assert gateway.app is not None
    old = token(user="mallory")
    now = time.time()
    await gateway.app[GATEWAY].revocations.revoke(Revocation("user", "mallory", now, now + 600))
    assert await status(gateway, store_app, old) == 401
    assert await status(gateway, store_app, token(user="mallory", iat=int(now) + 2)) == 204
    assert await status(gateway, store_app, token(user="alice")) == 204


def test_entries_expire_with_the_token() -> None:
    revocations = RevocationList()
    revocations.add(Revocation("project", "p1", revoked_at=100, expires_at=200))

    def reason(now: float) -> str | None:
        return revocations.reason_refused(jti=None, user="u", project="p1", issued_at=50.0, now=now)

    assert reason(150) == "its project was revoked"
    assert reason(200) is None
    revocations.prune(now=200)
    assert len(revocations) == 0


def test_revocation_never_outlives_the_token_or_max_ttl() -> None:
    config = RevocationConfig(max_ttl=3600)
    assert revocation_for("jti", "j", config, expires_at=1300, now=1000).expires_at == 1300
    assert revocation_for("user", "u", config, now=1000).expires_at == 4600
    assert revocation_for("user", "u", config, ttl=10**6, now=1000).expires_at == 4600
    with pytest.raises(ValueError, match="already expired"):
        revocation_for("jti", "j", config, expires_at=999, now=1000)


# --- across processes, through Redis -------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, keys: Keys, store_server: TestServer, redis_url: str) -> Path:
    data = config_data(
        str(store_server.make_url("")).rstrip("/"),
        keys,
        revocation={"store": "redis", "redis": {"url": redis_url}, "max_ttl": 3600},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_cli_revoke_reaches_every_process_within_a_second(
    gateway_pair: list[str],
    config_file: Path,
    store_app: web.Application,
    token: TokenFactory,
    redis_url: str,
) -> None:
    stolen = token()
    image = add_image(store_app, owner="project-a")

    async with ClientSession() as session:

        async def status_at(url: str) -> int:
            try:
                async with session.delete(
                    f"{url}/v2/images/{image.id}", headers={"X-Auth-Token": stolen}
                ) as response:
                    return response.status
            except OSError:
                return 0  # not listening yet

        for url in gateway_pair:
            # The token works (and is cached) on each process first.
            async def works(url: str = url) -> bool:
                return await status_at(url) in (204, 404)

            await seconds_until(works, f"the token to work on {url}", deadline=20)

        exp = jwt.decode(stolen, options={"verify_signature": False})["exp"]
        result = cli(
            "revoke",
            "--config",
            str(config_file),
            "--jti",
            jti_of(stolen),
            "--expires-at",
            str(exp),
        )
        assert result.returncode == 0, result.stderr
        written = time.monotonic()

        async def refused_everywhere() -> bool:
            statuses = [await status_at(url) for url in gateway_pair]
            return statuses == [401, 401]

        await seconds_until(refused_everywhere, "the refusal on both processes", deadline=1.0)
        print(f"refused on both processes {time.monotonic() - written:.3f} s after the CLI")

    score = redis.Redis.from_url(redis_url).zrange("igw:revoked", 0, -1, withscores=True)
    assert len(score) == 1
    assert score[0][1] == exp + 5, "the entry expires with the token (exp + leeway)"


RevocationGateway = Callable[[str], Awaitable[Client]]


@pytest.fixture
def revocation_gateway(make_gateway: GatewayFactory, store_server: TestServer) -> RevocationGateway:
    """Makes a gateway whose revocations come from the Redis at a URL (its limiter stays
    in-process)."""

    async def make(url: str) -> Client:
        return await make_gateway(
            str(store_server.make_url("")).rstrip("/"),
            revocation={"store": "redis", "redis": {"url": url}},
        )

    return make


@pytest.fixture
async def redis_gateway(revocation_gateway: RevocationGateway, redis_url: str) -> Client:
    return await revocation_gateway(redis_url)


async def test_hot_path_makes_no_redis_round_trip(
    redis_gateway: Client, store_app: web.Application, token: TokenFactory, redis_url: str
) -> None:
    client = redis_gateway
    server = redis.Redis.from_url(redis_url)
    tok = token()
    before = int(server.info("stats")["total_commands_processed"])
    for _ in range(20):
        assert await status(client, store_app, tok) == 204
    # INFO itself is one command; a health-check PING may add one more.
    assert int(server.info("stats")["total_commands_processed"]) - before <= 3


async def test_resync_after_the_subscription_drops(
    redis_gateway: Client,
    store_app: web.Application,
    token: TokenFactory,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.authn.revocation")
    client = redis_gateway
    assert client.app is not None
    store = client.app[GATEWAY].revocations
    assert isinstance(store, RedisRevocationStore)
    stolen = token()
    assert await status(client, store_app, stolen) == 204
    server = redis.Redis.from_url(redis_url)
    assert server.client_kill_filter(_type="pubsub") == 1
    # Written while the gateway is not subscribed: the message is lost to it.
    writer = RedisRevocationStore(RedisConfig(url=redis_url))
    now = time.time()
    await writer.revoke(Revocation("jti", jti_of(stolen), now, now + 600))
    await writer.close()

    async def refused() -> bool:
        return await status(client, store_app, stolen) == 401

    await seconds_until(refused, "the refusal", deadline=5.0)
    assert store.resyncs >= 2
    assert store.outage.count >= 1
    # The outage's start and its end, each once.
    lines = [r.getMessage() for r in caplog.records if "Redis (revocations)" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Redis (revocations) unavailable: ")
    assert lines[1].startswith("Redis (revocations) recovered after ")
    assert lines[1].endswith("; resynced, 1 revocation(s)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jti", "abc", "--expires-at", "1"], "already expired"),
        (["--user", "u", "--ttl", "-5"], "--ttl must be positive"),
        (["--project", ""], "the project to revoke is empty"),
    ],
)
def test_cli_revoke_refuses_bad_input_and_writes_nothing(
    config_file: Path, redis_url: str, args: list[str], message: str
) -> None:
    result = cli("revoke", "--config", str(config_file), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert redis.Redis.from_url(redis_url).exists("igw:revoked") == 0


def test_cli_revoke_needs_the_redis_store(tmp_path: Path, keys: Keys) -> None:
    path = tmp_path / "memory.yaml"
    path.write_text(yaml.safe_dump(config_data("http://127.0.0.1:1", keys)))
    result = cli("revoke", "--config", str(path), "--jti", "abc")
    assert result.returncode == 2
    assert "revocation.store is memory" in result.stderr


async def test_redis_down_at_start_is_logged_and_the_gateway_serves(
    revocation_gateway: RevocationGateway,
    caplog: pytest.LogCaptureFixture,
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.authn.revocation"):
        client = await revocation_gateway(f"redis://127.0.0.1:{free_port()}/0")
    assert client.app is not None
    store = client.app[GATEWAY].revocations
    assert isinstance(store, RedisRevocationStore)
    assert not store.synced.is_set()
    assert store.outage.count >= 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("no sync from Redis yet" in m for m in messages)
    assert await status(client, store_app, token()) == 204


async def test_malformed_entries_in_redis_are_skipped_and_logged(
    redis_gateway: Client,
    store_app: web.Application,
    token: TokenFactory,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert redis_gateway.app is not None
    store = redis_gateway.app[GATEWAY].revocations
    assert isinstance(store, RedisRevocationStore)
    server = redis.Redis.from_url(redis_url)
    stolen, later = token(), token()
    now = time.time()
    good = Revocation("jti", jti_of(stolen), now, now + 600)
    junk: dict[bytes, float] = {
        b"not json": now + 600,
        b"[1, 2]": now + 600,
        good.to_json().encode(): now + 600,
    }
    with caplog.at_level(logging.WARNING, logger="gateway.authn.revocation"):
        server.zadd("igw:revoked", junk)
        server.publish("igw:revocations", b"garbage")
        assert server.client_kill_filter(_type="pubsub") == 1

        async def refused() -> bool:
            return await status(redis_gateway, store_app, stolen) == 401

        await seconds_until(refused, "the refusal", deadline=5.0)
    skipped = [r.getMessage() for r in caplog.records if "ignored a malformed" in r.getMessage()]
    assert len(skipped) >= 2
    # The follower survived: a later revocation still arrives.
    writer = RedisRevocationStore(RedisConfig(url=redis_url))
    await writer.revoke(Revocation("jti", jti_of(later), now, now + 600))
    await writer.close()

    async def later_refused() -> bool:
        return await status(redis_gateway, store_app, later) == 401

    await seconds_until(later_refused, "the later refusal", deadline=1.0)


def test_cli_revoke_with_redis_down_says_so(tmp_path: Path, keys: Keys) -> None:
    nowhere = {"store": "redis", "redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}}
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(config_data("http://127.0.0.1:1", keys, revocation=nowhere)))
    result = cli("revoke", "--config", str(path), "--user", "mallory")
    assert result.returncode == 1
    assert "the revocation was not written" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "redis_section",
    [{"cluster_nodes": ["127.0.0.1:7000"]}, {"url": "redis+sentinel://127.0.0.1:26379/main"}],
)
def test_revocations_need_a_plain_redis_url(redis_section: dict[str, Any]) -> None:
    # RevocationConfig reuses the rate limiter's RedisConfig, which also
    # takes a cluster or a Sentinel; revocation pub/sub needs one server.
    with pytest.raises(ValueError, match="revocations need a redis://"):
        RevocationConfig(store="redis", redis=RedisConfig(**redis_section))


async def test_an_outage_is_logged_once_and_what_was_known_outlives_an_empty_restart(
    own_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: the known revocations keep applying, one line says so however
    many retries fail, and one says when it is back. Started again empty (no
    persistence), what the process knew stays, and what is written now is added."""
    config = RedisConfig(url=own_redis.url, probe_interval=0.05)
    store = RedisRevocationStore(config)
    await store.open()
    try:
        await _outage_and_empty_restart(store, own_redis, caplog)
    finally:
        await store.close()


def _synced(store: RedisRevocationStore) -> Callable[[], Awaitable[bool]]:
    async def synced() -> bool:
        return store.synced.is_set()

    return synced


async def _revoke_jti(url: str, jti: str) -> None:
    now = time.time()
    writer = RedisRevocationStore(RedisConfig(url=url))
    try:
        await writer.revoke(Revocation("jti", jti, now, now + 600))
    finally:
        await writer.close()


async def _outage_and_empty_restart(
    store: RedisRevocationStore, own_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(jti: str) -> bool:
        now = time.time()
        reason = store.revocations.reason_refused(
            jti=jti, user="u", project="p", issued_at=now, now=now
        )
        return reason is not None

    async def known(jti: str) -> bool:
        return refused(jti)

    async def retried() -> bool:
        return store.outage.count >= 5

    await _revoke_jti(own_redis.url, "before-the-outage")
    await seconds_until(partial(known, "before-the-outage"), "the first revocation", deadline=1.0)
    with caplog.at_level(logging.INFO, logger="gateway.authn.revocation"):
        own_redis.kill()
        await seconds_until(retried, "five failed attempts", deadline=10.0)
        assert not store.synced.is_set()
        assert refused("before-the-outage")
        assert "the 1 known still apply" in (await RevocationSynced(store)()).detail
        own_redis.start()
        await seconds_until(_synced(store), "the resync after the restart", deadline=10.0)
        # Redis came back empty; what this process knew is in it again, so a
        # process started now refuses the token too.
        fresh = RedisRevocationStore(RedisConfig(url=own_redis.url))
        await fresh.open()
        try:
            assert fresh.revocations.reason_refused(
                jti="before-the-outage", user="u", project="p", issued_at=None, now=time.time()
            )
        finally:
            await fresh.close()
        await _revoke_jti(own_redis.url, "after-the-restart")
        await seconds_until(
            partial(known, "after-the-restart"), "the revocation after the restart", deadline=1.0
        )
    assert refused("before-the-outage")
    lines = [r.getMessage() for r in caplog.records]
    lost = [line for line in lines if line.startswith("Redis (revocations) unavailable: ")]
    back = [line for line in lines if line.startswith("Redis (revocations) recovered after ")]
    assert len(lost) == 1, lost
    assert "the 1 revocation(s) known keep applying" in lost[0]
    assert len(back) == 1, back
    assert (store.outage.outages, store.outage.since) == (1, None)
