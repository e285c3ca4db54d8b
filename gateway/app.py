"""Builds the gateway application. The order of the chain is written here, once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway.authn.authenticator import Authenticator
from gateway.authn.keystone.validator import KeystoneTokens
from gateway.authn.revocation import (
    RedisRevocationStore,
    RevocationStore,
    make_revocation_store,
)
from gateway.authn.tokens import JwtVerifier
from gateway.authn.verifier import TokenVerifier
from gateway.authz.ownership import ImageOwners
from gateway.authz.policy import Policy
from gateway.config import GatewayConfig, RateLimitConfig
from gateway.handlers.limits import LimitsEndpoint
from gateway.handlers.proxy import Proxy
from gateway.http.header_boundary import HeaderBoundary
from gateway.http.protocol import ClientLimits
from gateway.http.public_links import PublicLinks
from gateway.http.routes import Handler, RouteTable
from gateway.http.upstream import UpstreamClient
from gateway.middleware.authentication import AuthenticationMiddleware
from gateway.middleware.authorization import AuthorizationMiddleware
from gateway.middleware.fault_envelope import FaultEnvelopeMiddleware
from gateway.middleware.header_hygiene import HeaderHygieneMiddleware
from gateway.middleware.observability import ObservabilityMiddleware
from gateway.middleware.rate_limit import RateLimitMiddleware
from gateway.middleware.request_id import RequestIdMiddleware
from gateway.middleware.routing import RoutingMiddleware
from gateway.middleware.via import ViaMiddleware
from gateway.observability.audit import AuditSink, DiscardingAuditSink
from gateway.observability.feed import DecisionFeed, LocalFeed
from gateway.observability.instrumentation import Instrumentation, instrumentation
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.mirrors import mirror_counts
from gateway.observability.readiness import (
    ConfigLoaded,
    KeysLoaded,
    KeystoneReachable,
    Readiness,
    ReadinessCheck,
    RedisReachable,
    RevocationSynced,
    UpstreamReachable,
    checks_failing_open,
)
from gateway.ratelimit.limiter import RateLimiter
from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.overrides import OverrideRefresher, RedisOverrides
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import LimitStore


@dataclass(frozen=True, slots=True)
class Gateway:
    """Everything with state that one gateway app owns."""

    config: GatewayConfig
    upstream: UpstreamClient
    owners: ImageOwners
    verifier: JwtVerifier
    # Opaque OpenStack tokens, when auth.keystone is configured.
    keystone: KeystoneTokens | None
    # The kinds of token trusted, the verifiers above among them.
    authenticator: Authenticator
    limiter: RateLimiter
    metrics: GatewayMetrics
    # Where decisions go for the dashboard: this process's log, or the
    # admin process's socket when there are several workers.
    feed: DecisionFeed
    audit: AuditSink
    readiness: Readiness
    policy: Policy
    revocations: RevocationStore
    boundary: HeaderBoundary
    client_limits: ClientLimits
    # How the parts above were made: traced or as they are.
    instrumentation: Instrumentation


GATEWAY = web.AppKey("gateway", Gateway)

log = logging.getLogger("gateway.app")


@dataclass(frozen=True, slots=True)
class DryRun:
    """The chain run to see what it decides (``explain``): ``forward`` stands
    in for the proxy, the limiter takes nothing, no audit record is written,
    and the owner look-up may be skipped."""

    forward: Handler
    owner_lookup: bool = True


def make_store(config: RateLimitConfig) -> LimitStore:
    if config.store == "redis":
        assert config.redis is not None
        return RedisStore(config.redis)
    return MemoryStore()


def make_limiter(
    config: RateLimitConfig,
    store: LimitStore,
    *,
    counting: bool,
    parts: Instrumentation | None = None,
) -> RateLimiter:
    """The limiter, reading per-tenant overrides from Redis when limits live there."""
    overrides = None
    if isinstance(store, RedisStore):
        overrides = OverrideRefresher(
            RedisOverrides(
                store.client,
                store.config,
                frozenset(rule.name for rule in config.rules if rule.counts_bytes),
            ),
            interval=store.config.overrides_refresh,
            timeout=store.config.timeout,
        )
    return (parts or Instrumentation()).rate_limiter(config, store, overrides, counting=counting)


def build_readiness(
    config: GatewayConfig,
    upstream: UpstreamClient,
    store: LimitStore,
    own: Sequence[ReadinessCheck],
    keystone: KeystoneTokens | None = None,
) -> Readiness:
    """The checks every process shares, and ``own``: what this process knows of
    itself (a worker: its keys and revocations; the supervisor: its workers')."""
    readiness = Readiness(
        [ConfigLoaded(config), *own, UpstreamReachable(upstream)],
        timeout=config.upstream.connect_timeout,
        failing_open=checks_failing_open(config),
    )
    if keystone is not None:
        readiness.add(KeystoneReachable(keystone.client))
    if isinstance(store, RedisStore):
        readiness.add(RedisReachable(store.client))
    return readiness


def worker_readiness(gateway: Gateway) -> Readiness:
    """What a worker reports of itself to the supervisor (gateway.runtime.worker_status)."""
    return Readiness(
        worker_checks(gateway.verifier, gateway.revocations),
        timeout=1.0,
        failing_open=checks_failing_open(gateway.config),
    )


def worker_checks(verifier: JwtVerifier, revocations: RevocationStore) -> list[ReadinessCheck]:
    """What only the process that serves can tell: its keys, its revocations."""
    checks: list[ReadinessCheck] = []
    if verifier.issuers:
        # Keys only when some issuer signs tokens (not Keystone alone).
        checks.append(KeysLoaded(verifier.usable_key_count))
    if isinstance(revocations, RedisRevocationStore):
        checks.append(RevocationSynced(revocations))
    return checks


def build_app(
    config: GatewayConfig,
    *,
    store: LimitStore | None = None,
    feed: DecisionFeed | None = None,
    dry_run: DryRun | None = None,
    client_limits: ClientLimits | None = None,
) -> web.Application:
    """The gateway app. ``client_limits``: the serving socket's, kept across a
    reload (they belong to the listener, which a reload keeps)."""
    # Traced parts only when tracing is configured, and never for a dry run.
    parts = instrumentation(config.tracing if dry_run is None else None)
    upstream = parts.upstream_client(config.upstream)
    owners = parts.image_owners(upstream, config.upstream)
    revocations = make_revocation_store(config.revocation)
    verifier = JwtVerifier(config.auth, revocations.revocations)
    keystone = None
    if config.auth.keystone is not None:
        keystone = KeystoneTokens(
            config.auth.keystone,
            revocations.revocations,
            max_token_bytes=config.auth.max_token_bytes,
            client=parts.keystone_client(config.auth.keystone),
        )
    # JWTs first; with no JWT issuer every token is Keystone's to decide.
    verifiers: list[TokenVerifier] = [verifier] if verifier.issuers or keystone is None else []
    if keystone is not None:
        verifiers.append(keystone)
    service = keystone if keystone is not None and keystone.config.service_tokens else None
    authenticator = Authenticator(verifiers, service)
    policy = Policy(config.authorization)
    limiter = make_limiter(
        config.rate_limit,
        store or make_store(config.rate_limit),
        counting=dry_run is None,
        parts=parts,
    )
    routes = RouteTable(enabled=config.routes.enabled)
    metrics = GatewayMetrics()
    boundary = HeaderBoundary(config.headers.forward)
    client_limits = client_limits or ClientLimits(
        header_read_timeout=config.listen.header_read_timeout,
        keepalive_timeout=config.listen.keepalive_timeout,
        max_connections=config.listen.max_connections,
        max_unfinished_heads_per_client=config.listen.max_unfinished_heads_per_client,
    )
    feed = feed or LocalFeed(config.admin.recent_decisions)
    mirror_counts(
        metrics,
        verifier=verifier,
        keystone=keystone,
        limiter=limiter,
        policy=policy,
        revocations=revocations,
        feed=feed,
        boundary=boundary,
        client_limits=client_limits,
    )
    audit = AuditSink(config.audit) if dry_run is None else DiscardingAuditSink()

    app = web.Application(
        middlewares=[
            RequestIdMiddleware(),
            *parts.server_span(),
            ObservabilityMiddleware(metrics, feed, audit),
            FaultEnvelopeMiddleware(),
            ViaMiddleware(config.via),
            HeaderHygieneMiddleware(boundary, check_host=config.listen.public_url is None),
            RoutingMiddleware(routes, config.routes),
            AuthenticationMiddleware(authenticator, config.auth.realm),
            RateLimitMiddleware(limiter),
            AuthorizationMiddleware(
                policy, owners if dry_run is None or dry_run.owner_lookup else None
            ),
        ],
        # aiohttp refuses header lines over 8190 bytes before any middleware
        # runs, with a bare text 400; leave room for the configured token size
        # so that an oversized token gets our 401 fault instead.
        handler_args={"max_field_size": max(16384, config.auth.max_token_bytes + 1024)},
    )
    links = PublicLinks(
        config.listen.public_url, config.upstream.url, config.rate_limit.trusted_proxies
    )
    proxy = Proxy(upstream, links, config.upstream.role_mapping, config.routes.max_image_bytes)
    forward = proxy.handle if dry_run is None else dry_run.forward
    routes.register(app.router, forward, {"limits:read": LimitsEndpoint(limiter).handle})
    readiness = build_readiness(
        config, upstream, limiter.store, worker_checks(verifier, revocations), keystone
    )
    app[GATEWAY] = Gateway(
        config,
        upstream,
        owners,
        verifier,
        keystone,
        authenticator,
        limiter,
        metrics,
        feed,
        audit,
        readiness,
        policy,
        revocations,
        boundary=boundary,
        client_limits=client_limits,
        instrumentation=parts,
    )
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_not_ready)
    return app


async def _not_ready(app: web.Application) -> None:
    # First of the shutdown hooks: load balancers stop sending while the
    # requests already here finish.
    app[GATEWAY].readiness.draining = True


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    await gateway.instrumentation.open()
    await gateway.upstream.open()
    gateway.audit.open()
    await gateway.feed.start(gateway.metrics.snapshot)
    # Keys and revocations are current before the first request is served.
    await gateway.revocations.open()
    for token_verifier in gateway.authenticator.verifiers:
        await token_verifier.open()
    gateway.limiter.start()
    # Counts the parts keep are read when /metrics takes its snapshot.
    yield
    for token_verifier in reversed(gateway.authenticator.verifiers):
        await token_verifier.close()
    await gateway.revocations.close()
    await gateway.feed.close()
    gateway.audit.close()
    await gateway.upstream.close()
    await gateway.limiter.close()
    # Last: the spans of everything above are exported, or given up on.
    await gateway.instrumentation.close()
