"""The ``revocation`` section: where revoked tokens, users and projects are kept."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import model_validator

from gateway.config._base import PositiveFloat, _Section
from gateway.config.redis import RedisConfig


class RevocationConfig(_Section):
    """Where revoked tokens, users and projects are shared between gateway processes."""

    store: Literal["memory", "redis"] = "memory"
    redis: RedisConfig | None = None
    # How long a revocation by user or project, or by jti without the token's
    # expiry, is kept: at least the longest life an issuer gives a token.
    max_ttl: PositiveFloat = 86400.0
    # Redis unreachable: open serves on, the revocations last known still
    # applied (logged once per outage, counted), and /readyz says degraded;
    # closed makes this process unready (503) until it has resynced.
    failure_mode: Literal["open", "closed"] = "open"

    @model_validator(mode="after")
    def _redis_when_needed(self) -> Self:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store 'redis' needs a redis section with a url")
        # Revocations travel by pub/sub on one standalone Redis.
        if self.redis is not None and (
            self.redis.url is None or self.redis.url.startswith("redis+sentinel://")
        ):
            raise ValueError("redis: revocations need a redis://, rediss:// or unix:// url")
        return self
