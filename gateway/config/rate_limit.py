"""The ``rate_limit`` section: the limiter's store, its failure mode and the rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator

from gateway.config._base import _Section
from gateway.config.redis import RedisConfig
from gateway.http.routes import check_route_names

UNIT_SECONDS: Mapping[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The sliding-window log keeps one entry per admitted request in the window,
# so a limit is also a memory bound per caller and rule; overrides and the
# CLI are held to it too.
MAX_LIMIT = 1_000_000


class RateLimitRule(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    path: str = ".*"
    methods: list[str] = ["*"]
    # Route names (get_images, upload_image, delete_image, ...): the rule
    # counts only these routes' calls, besides matching path and methods.
    routes: list[str] = []
    unit: Literal["second", "minute", "hour", "day"]
    value: int = Field(gt=0, le=MAX_LIMIT)
    # global: every caller together, refused with 503 as Repose does.
    by: Literal["project", "user", "ip", "global"] = "project"
    # Shadow: decide and count would-be refusals, but let them pass.
    shadow: bool = False

    @field_validator("path")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, value: list[str]) -> list[str]:
        check_route_names(value)
        return value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @property
    def period_seconds(self) -> int:
        return UNIT_SECONDS[self.unit]


class RateLimitConfig(_Section):
    store: Literal["memory", "redis"] = "memory"
    redis: RedisConfig | None = None
    failure_mode: Literal["open", "closed"] = "open"
    over_limit_status: Literal[413, 429] = 413
    headers: bool = True
    rules: list[RateLimitRule] = []
    # Peers whose X-Forwarded-For is believed, for rules counted by ip.
    trusted_proxies: list[IPvAnyNetwork] = []

    @model_validator(mode="after")
    def _redis_when_needed(self) -> RateLimitConfig:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store 'redis' needs a redis section (url or cluster_nodes)")
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rules: every rule name must be unique")
        return self
