"""Which rules a request counts against, worked out once per route and method."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.authn.identity import Identity
from gateway.config import RateLimitConfig
from gateway.ratelimit.limiter import RateLimiter
from gateway.ratelimit.memory import MemoryStore

RULES = [
    {
        "name": "image-paths",
        "path": "^/(v2/)?images/",
        "methods": ["DELETE"],
        "unit": "minute",
        "value": 5,
    },
    {"name": "delete-route", "routes": ["delete_image"], "unit": "minute", "value": 5},
    {"name": "anything", "unit": "minute", "value": 5},
    {"name": "reads", "methods": ["GET"], "unit": "minute", "value": 5, "shadow": True},
]
ALICE = Identity("p1", "alice", frozenset())


@pytest.fixture
async def limiter() -> AsyncIterator[RateLimiter]:
    config = RateLimitConfig.model_validate({"rules": RULES})
    limiter = RateLimiter(config, MemoryStore())
    yield limiter
    await limiter.close()


async def names(limiter: RateLimiter, method: str, path: str, route: str | None) -> list[str]:
    decision = await limiter.decide(method, path, ALICE, "192.0.2.1", "req", route)
    return [] if decision is None else [rule.name for rule in decision.rules]


async def test_rules_match_by_method_route_and_path(limiter: RateLimiter) -> None:
    image = "/v2/images/1b6e6ac2-0b3e-4b56-a2f1-7b3c3c6c9a11"
    for _ in range(2):  # worked out, then from the table: the same answer
        assert await names(limiter, "DELETE", image, "delete_image") == [
            "image-paths",
            "delete-route",
            "anything",
        ]
        # The route and method are the same; the path still decides.
        assert await names(limiter, "DELETE", "/v2/schemas/image", "delete_image") == [
            "delete-route",
            "anything",
        ]
        assert await names(limiter, "GET", image, "get_image") == ["anything", "reads"]


async def test_checks_carry_subject_limit_and_period(limiter: RateLimiter) -> None:
    decision = await limiter.decide("GET", "/v2/images", ALICE, "192.0.2.1", "req", "get_images")
    assert decision is not None
    assert [(c.subject, c.rule, c.limit, c.period, c.enforced) for c in decision.checks] == [
        ("project:p1", "anything", 5, 60, True),
        ("project:p1", "reads", 5, 60, False),
    ]
    # Shadow rules are decided but never shown to the caller.
    assert [limit.rule.name for limit in decision.limits] == ["anything"]


async def test_the_table_of_routes_and_methods_is_bounded(limiter: RateLimiter) -> None:
    # A client chooses the method; however many it invents, the table stays small
    # and every answer stays right.
    for i in range(400):
        assert await names(limiter, f"X{i}", "/", None) == ["anything"]
    assert len(limiter._plans) <= 256
