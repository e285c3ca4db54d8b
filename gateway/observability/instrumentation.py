"""What the app's traced parts are made by: as they are, or traced.

``build_app`` makes the backend client, the owner look-up, the limiter and
Keystone's client through an Instrumentation. This one makes them as they
are and adds no step to the chain, so with no ``tracing`` section a request
runs not one line of tracing code and the process imports nothing of
OpenTelemetry; ``instrumentation()`` returns the traced kind
(gateway.observability.tracing) only when the section is there.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.authn.keystone.client import KeystoneClient
from gateway.authz.ownership import ImageOwners
from gateway.config import KeystoneConfig, RateLimitConfig, TracingConfig, UpstreamConfig
from gateway.http.upstream import UpstreamClient
from gateway.middleware.base import Middleware
from gateway.ratelimit.limiter import RateLimiter
from gateway.ratelimit.overrides import OverrideRefresher
from gateway.ratelimit.store import LimitStore


class Instrumentation:
    """Untraced: every part as it is, no step added to the chain."""

    def server_span(self) -> Sequence[Middleware]:
        """The chain's tracing step, right inside the request id: none here."""
        return ()

    def upstream_client(self, config: UpstreamConfig) -> UpstreamClient:
        return UpstreamClient(config)

    def image_owners(self, upstream: UpstreamClient, config: UpstreamConfig) -> ImageOwners:
        return ImageOwners(upstream, config)

    def rate_limiter(
        self,
        config: RateLimitConfig,
        store: LimitStore,
        overrides: OverrideRefresher | None,
        *,
        counting: bool,
    ) -> RateLimiter:
        return RateLimiter(config, store, overrides, counting=counting)

    def keystone_client(self, config: KeystoneConfig) -> KeystoneClient:
        return KeystoneClient(config)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass


def instrumentation(config: TracingConfig | None) -> Instrumentation:
    if config is None:
        return Instrumentation()
    # Imported here: a gateway that does not trace never loads OpenTelemetry.
    from gateway.observability.tracing import Tracing

    return Tracing(config)
