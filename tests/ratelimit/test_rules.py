"""Rule kinds through the whole chain: global, by ip, shadow; and their config."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from gateway.app import GATEWAY
from gateway.config import ConfigError, parse_config, sentinel_parts
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory
from tests.support.upstreams import ScriptedUpstream


async def _delete(client: Client, tok: str, **headers: str) -> Any:
    return await client.delete(
        f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": tok, **headers}
    )


@pytest.fixture
def with_rules(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    limiter_section: dict[str, Any],
) -> Any:
    async def make(rules: list[dict[str, Any]], **extra: Any) -> Client:
        return await make_gateway(
            scripted[1], rate_limit={**limiter_section, "rules": rules, **extra}
        )

    return make


async def test_global_limit_counts_everyone_and_answers_503(
    with_rules: Any, token: TokenFactory
) -> None:
    client = await with_rules([{"name": "all", "unit": "minute", "value": 2, "by": "global"}])
    assert (await _delete(client, token("p1", roles=["admin"]))).status == 204
    assert (await _delete(client, token("p2", roles=["admin"]))).status == 204
    response = await _delete(client, token("p3", roles=["admin"]))
    body = await assert_fault(response, 503, "serviceUnavailable")
    assert "global" in body["details"]
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    assert "retryAfter" in body


async def _one_per_ip_behind(
    with_rules: Any, token: TokenFactory, proxies: str
) -> tuple[Client, str]:
    """A gateway allowing one request per client IP; one request from 198.51.100.1 made."""
    client = await with_rules(
        [{"name": "per-ip", "unit": "minute", "value": 1, "by": "ip"}], trusted_proxies=[proxies]
    )
    tok = token(roles=["admin"])
    assert (await _delete(client, tok, **{"X-Forwarded-For": "198.51.100.1"})).status == 204
    return client, tok


async def test_ip_rule_counts_the_forwarded_client_behind_a_trusted_proxy(
    with_rules: Any, token: TokenFactory
) -> None:
    client, tok = await _one_per_ip_behind(with_rules, token, "127.0.0.0/8")
    refused = await _delete(client, tok, **{"X-Forwarded-For": "198.51.100.1"})
    await assert_fault(refused, 413, "overLimit")
    # Another client behind the same proxy has its own budget; what it
    # claims to the left of its own address proves nothing.
    other = await _delete(client, tok, **{"X-Forwarded-For": "198.51.100.1, 198.51.100.2"})
    assert other.status == 204


async def test_ip_rule_ignores_forwarded_for_from_untrusted_peers(
    with_rules: Any, token: TokenFactory
) -> None:
    client, tok = await _one_per_ip_behind(with_rules, token, "10.0.0.0/8")
    # A new address in the header does not buy a new budget: the peer counts.
    refused = await _delete(client, tok, **{"X-Forwarded-For": "198.51.100.9"})
    await assert_fault(refused, 413, "overLimit")


async def test_malformed_forwarded_for_from_a_trusted_proxy_is_400_and_counts_nothing(
    with_rules: Any, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await with_rules(
        [{"name": "per-ip", "unit": "minute", "value": 1, "by": "ip"}],
        trusted_proxies=["127.0.0.1/32"],
    )
    tok = token(roles=["admin"])
    with caplog.at_level(logging.INFO, logger="gateway.http.faults"):
        response = await _delete(client, tok, **{"X-Forwarded-For": "not-an-ip"})
    await assert_fault(response, 400, "badRequest")
    assert "not-an-ip" not in await response.text()
    assert any("400" in r.getMessage() for r in caplog.records)
    assert (await _delete(client, tok)).status == 204


async def test_shadow_rule_logs_and_counts_but_lets_requests_pass(
    with_rules: Any, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await with_rules(
        [
            {"name": "trial", "unit": "minute", "value": 1, "shadow": True},
            {"name": "deletes", "unit": "minute", "value": 10},
        ]
    )
    tok = token(roles=["admin"])
    with caplog.at_level(logging.INFO, logger="gateway.ratelimit"):
        responses = [await _delete(client, tok) for _ in range(3)]
    assert [r.status for r in responses] == [204, 204, 204]
    assert responses[-1].headers["RateLimit-Policy"] == '"deletes";q=10;w=60'
    assert client.app is not None
    assert client.app[GATEWAY].limiter.shadow_rejections == {"trial": 2}
    assert len([r for r in caplog.records if "shadow rule trial" in r.getMessage()]) == 2


async def test_headers_switch_off(with_rules: Any, token: TokenFactory) -> None:
    client = await with_rules([{"name": "d", "unit": "minute", "value": 5}], headers=False)
    response = await _delete(client, token(roles=["admin"]))
    assert response.status == 204
    assert "RateLimit" not in response.headers
    assert "RateLimit-Policy" not in response.headers


@pytest.mark.parametrize(
    ("rate_limit", "message"),
    [
        (
            {"store": "redis", "redis": {"url": "redis://x", "cluster_nodes": ["a:1"]}},
            "rate_limit.redis: give exactly one of url and cluster_nodes",
        ),
        (
            {"store": "redis", "redis": {"cluster_nodes": ["nope"]}},
            "rate_limit.redis.cluster_nodes: 'nope' is not host:port",
        ),
        (
            {"store": "redis", "redis": {"url": "redis+sentinel://h:26379"}},
            "rate_limit.redis: a redis+sentinel:// url needs the master name",
        ),
        ({"store": "redis", "redis": {"url": "http://h"}}, "rate_limit.redis.url:"),
        ({"trusted_proxies": ["10.0.0.0/33"]}, "rate_limit.trusted_proxies.0:"),
        (
            {"rules": [{"name": "x", "unit": "minute", "value": 1, "by": "tenant"}]},
            "rate_limit.rules.0.by:",
        ),
        ({"store": "redis"}, "store 'redis' needs a redis section"),
    ],
)
def test_bad_rate_limit_config_names_the_key_path(
    keys: Keys, rate_limit: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(config_data("http://upstream", keys, rate_limit=rate_limit))
    assert message in str(error.value)


def test_cluster_and_sentinel_configs_parse(keys: Keys) -> None:
    cluster = parse_config(
        config_data(
            "http://u", keys, rate_limit={"store": "redis", "redis": {"cluster_nodes": ["h:7000"]}}
        )
    )
    assert cluster.rate_limit.redis is not None
    assert cluster.rate_limit.redis.cluster_nodes == ["h:7000"]
    sentinel = parse_config(
        config_data(
            "http://u",
            keys,
            rate_limit={
                "store": "redis",
                "redis": {"url": "redis+sentinel://a:26379,b:26380/main/2"},
            },
        )
    )
    assert sentinel.rate_limit.redis is not None
    assert sentinel.rate_limit.redis.url is not None
    assert sentinel_parts(sentinel.rate_limit.redis.url) == (
        [("a", 26379), ("b", 26380)],
        "main",
        2,
    )
