"""The ``rate_limit`` section: the limiter's store, its failure mode and the rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    ByteSize,
    Field,
    IPvAnyNetwork,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.config._base import _Section
from gateway.config.redis import RedisConfig
from gateway.http.routes import IMAGE_DATA_ROUTES, check_route_names

UNIT_SECONDS: Mapping[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The sliding-window log keeps one entry per admitted request in the window,
# so a limit is also a memory bound per caller and rule; overrides and the
# CLI are held to it too.
MAX_LIMIT = 1_000_000
# A byte budget's entries merge (gateway/ratelimit/store.py), so its size is
# no memory bound; this one keeps every sum exact in Lua's doubles (2^53).
MAX_BYTES = 1 << 50
# A chunked body reserves its bytes a slice at a time: one store call per slice.
DEFAULT_BYTE_SLICE = 16 << 20
MAX_BYTE_SLICE = 1 << 30

_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)


def parse_byte_size(value: object) -> int:
    """A number of bytes written as people write it: ``50GiB``, ``200MiB``, ``1.5 GB``, ``4096``.

    KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB powers of 1000.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a number of bytes or a size such as 50GiB or 200MiB")
    try:
        return int(_BYTE_SIZE.validate_python(value))
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ValueError(
            f"{problem} in {str(value)[:40]!r}; write a size such as 50GiB, 200MiB or 1.5GB"
        ) from None


def _check_byte_size(value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        shown = [ByteSize(bound).human_readable(separator=" ") for bound in (low, high)]
        raise ValueError(f"must be from {shown[0]} to {shown[1]}")
    return value


class RateLimitRule(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    # What the rule counts: requests, or the image bytes of its routes'
    # bodies (uploads: the request's, downloads: the response's). Before the
    # fields whose checks depend on it.
    count: Literal["requests", "bytes"] = "requests"
    path: str = ".*"
    methods: list[str] = ["*"]
    # Route names (get_images, upload_image, delete_image, ...): the rule
    # counts only these routes' calls, besides matching path and methods.
    routes: list[str] = []
    unit: Literal["second", "minute", "hour", "day"]
    # Requests per unit; for a byte rule, bytes per unit (50GiB, 200MiB).
    value: int
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
    def _known_routes(cls, value: list[str], info: ValidationInfo) -> list[str]:
        check_route_names(value)
        other = sorted(set(value) - IMAGE_DATA_ROUTES)
        if info.data.get("count") == "bytes" and other:
            raise ValueError(
                f"{other[0]!r} moves no image data; a byte rule counts "
                f"{', '.join(sorted(IMAGE_DATA_ROUTES))}"
            )
        return value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @field_validator("value", mode="before")
    @classmethod
    def _value_in_its_unit(cls, value: Any, info: ValidationInfo) -> Any:
        # ``count`` comes before ``value``: when it is valid, it is here.
        if info.data.get("count") == "bytes":
            return _check_byte_size(parse_byte_size(value), 1, MAX_BYTES)
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError(
                f"a request rule's value is a number of requests, not {value[:40]!r}"
                " (a byte budget is a rule with count: bytes)"
            )
        return value

    @field_validator("value")
    @classmethod
    def _value_bounds(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("count") != "bytes" and not 0 < value <= MAX_LIMIT:
            raise ValueError(f"must be from 1 to {MAX_LIMIT} requests")
        return value

    @model_validator(mode="after")
    def _byte_rules_by_route(self) -> RateLimitRule:
        if self.count != "bytes":
            return self
        if self.path != ".*" or self.methods != ["*"]:
            raise ValueError(
                "a byte rule picks its calls by routes (of "
                f"{', '.join(sorted(IMAGE_DATA_ROUTES))}); path and methods are for request rules"
            )
        return self

    @property
    def period_seconds(self) -> int:
        return UNIT_SECONDS[self.unit]

    @property
    def counts_bytes(self) -> bool:
        return self.count == "bytes"

    @property
    def byte_routes(self) -> frozenset[str]:
        """The routes whose image bytes a byte rule counts (all of them when none is named)."""
        return frozenset(self.routes) if self.routes else IMAGE_DATA_ROUTES


class RateLimitConfig(_Section):
    store: Literal["memory", "redis"] = "memory"
    redis: RedisConfig | None = None
    failure_mode: Literal["open", "closed"] = "open"
    over_limit_status: Literal[413, 429] = 413
    headers: bool = True
    rules: list[RateLimitRule] = []
    # Peers whose X-Forwarded-For is believed, for rules counted by ip.
    trusted_proxies: list[IPvAnyNetwork] = []
    # A body whose length is not known ahead (chunked) reserves its bytes
    # against byte rules this much at a time, as it flows.
    byte_slice: int = DEFAULT_BYTE_SLICE

    @field_validator("byte_slice", mode="before")
    @classmethod
    def _slice_size(cls, value: Any) -> int:
        return _check_byte_size(parse_byte_size(value), 1 << 10, MAX_BYTE_SLICE)

    @model_validator(mode="after")
    def _redis_when_needed(self) -> RateLimitConfig:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store 'redis' needs a redis section (url or cluster_nodes)")
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rules: every rule name must be unique")
        return self
