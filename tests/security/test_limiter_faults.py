"""Rate-limit store faults are kept apart: a bad override, a script error, a
Redis restart and a slow reply each stay what they are, and none of them
turns into an outage for every tenant."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.app import GATEWAY
from gateway.cli.main import main
from gateway.config import MAX_LIMIT, ConfigError, parse_config
from tests.ratelimit.test_redis_faults import Load
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data, write_config
from tests.support.redis_servers import RedisProcess
from tests.support.tokens import Keys, TokenFactory
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import until

RULE = {"name": "deletes", "path": "^/(v2/)?images/", "unit": "minute", "value": 1000}


async def closed_gateway(make_gateway: GatewayFactory, upstream: str, url: str) -> Client:
    """Fail closed: any store trouble taken for an outage would be a 503.

    The Redis timeout is one no busy test machine reaches (0.2 s did, once, in
    a full run beside a benchmark): these tests are about what Redis answers,
    and a real timeout would rightly be a 503.
    """
    return await make_gateway(
        upstream,
        rate_limit={
            "store": "redis",
            "failure_mode": "closed",
            "redis": {"url": url, "timeout": 1.5, "probe_interval": 0.1, "overrides_refresh": 0.05},
            "rules": [RULE],
        },
    )


async def delete(client: Client, tok: str) -> int:
    response = await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": tok})
    await response.read()
    return response.status


@pytest.mark.parametrize("value", ["0", "-5", "abc", "1e23", str(MAX_LIMIT + 1)])
async def test_a_bad_override_written_to_redis_is_refused_at_read_time(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    redis_url: str,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    value: str,
) -> None:
    client = await closed_gateway(make_gateway, scripted[1], redis_url)
    gateway = client.app[GATEWAY] if client.app else None
    assert gateway is not None
    assert gateway.limiter.overrides is not None
    refresher = gateway.limiter.overrides
    redis.Redis.from_url(redis_url).hset(
        "igw:overrides", mapping={"deletes|project-a": value, "deletes|project-b": "2"}
    )
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        await until(
            lambda: ("project-b", "deletes") in refresher.table,
            "the refresh",
            deadline=5.0,
            interval=0.005,
        )
    # Logged once and counted; the good entry beside it is taken.
    assert refresher.refused_entries == 1
    assert ("project-a", "deletes") not in refresher.table
    assert [r for r in caplog.records if "ignoring the override" in r.getMessage()]
    tok = token("project-a", roles=["admin"])
    assert [await delete(client, tok) for _ in range(5)] == [204] * 5
    assert not gateway.limiter.breaker.is_open
    assert gateway.limiter.breaker.opened == 0


async def test_a_script_error_is_a_500_for_that_request_not_an_outage(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    redis_url: str,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await closed_gateway(make_gateway, scripted[1], redis_url)
    # A key of the wrong type under one tenant's window: the script fails on it.
    redis.Redis.from_url(redis_url).set("igw:window:{project:project-a}:deletes", "corrupt")
    broken, fine = token("project-a", roles=["admin"]), token("project-b", roles=["admin"])
    with caplog.at_level(logging.ERROR, logger="gateway.faults"):
        for _ in range(5):
            response = await client.delete(
                f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": broken}
            )
            await assert_fault(response, 500, "apiFault")
    assert [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [await delete(client, fine) for _ in range(5)] == [204] * 5
    limiter = client.app[GATEWAY].limiter if client.app else None
    assert limiter is not None
    assert limiter.breaker.opened == 0
    assert limiter.fail_closed_events == 0


async def test_after_a_redis_restart_no_503_once_it_answers_again(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    own_redis: RedisProcess,
    token: TokenFactory,
) -> None:
    """Fail closed, under concurrent load: the connections the gateway held
    are ones the restarted Redis has closed. Once the breaker has seen Redis
    answer, they are replaced, not taken for a second outage."""
    # The first round trip after the restart reconnects and loads the script
    # again, within closed_gateway's timeout.
    client = await closed_gateway(make_gateway, scripted[1], own_redis.url)
    limiter = client.app[GATEWAY].limiter if client.app else None
    assert limiter is not None
    load = Load(client, token(roles=["admin"]), concurrency=16)
    await load.wait_for(100)
    own_redis.kill()
    killed_at = time.monotonic()
    await load.wait_for(30, since=killed_at)
    # Open before Redis is back: a round trip that failed during the outage
    # but is only counted once Redis answers would otherwise open it then.
    await until(
        lambda: limiter.breaker.is_open, "the breaker to open", deadline=5.0, interval=0.005
    )
    own_redis.start()  # returns once it answers PING
    answered_at = time.monotonic()
    await until(
        lambda: not limiter.breaker.is_open, "the breaker to close", deadline=5.0, interval=0.005
    )
    closed_at = time.monotonic()
    opened = limiter.breaker.opened
    await load.wait_for(300, since=closed_at)
    await load.finish()
    assert closed_at - answered_at < 1.0
    # The outage was one (fail closed), and once Redis answered it was over.
    assert 503 in {s.status for s in load.samples if killed_at < s.started < answered_at}
    assert {s.status for s in load.samples if s.started >= closed_at} == {204}
    assert limiter.breaker.opened == opened, "the breaker never opened again"


def test_limit_values_are_bounded_in_config_and_cli(
    keys: Keys, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    too_big = {**RULE, "value": 10**23}
    with pytest.raises(ConfigError, match=r"rate_limit\.rules\.0\.value"):
        parse_config(config_data("http://127.0.0.1:1", keys, rate_limit={"rules": [too_big]}))
    data: dict[str, Any] = config_data(
        "http://127.0.0.1:1",
        keys,
        rate_limit={"store": "redis", "redis": {"url": redis_url}, "rules": [RULE]},
    )
    config = write_config(tmp_path / "gateway.yaml", data)
    argv = ["limits", "set", "--config", str(config), "--project", "p", "--rule", "deletes"]
    assert main([*argv, "--value", str(10**23)]) == 2
    assert f"from 1 to {MAX_LIMIT}" in capsys.readouterr().err
    assert redis.Redis.from_url(redis_url).hlen("igw:overrides") == 0
