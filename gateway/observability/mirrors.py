"""Which plain counts of the gateway's parts become which Prometheus counters.

The parts (token cache, limiter, policy, revocation list, JWKS key sets,
decision feed) count in plain integers and know nothing of Prometheus; this
is the one place that maps those counts to metrics.
"""

from __future__ import annotations

from functools import partial

from gateway.authn.keystone.validator import KeystoneTokens
from gateway.authn.revocation import RedisRevocationStore, RevocationStore
from gateway.authn.tokens import JwtVerifier
from gateway.authz.policy import Policy
from gateway.http.header_boundary import HeaderBoundary
from gateway.http.protocol import ClientLimits
from gateway.observability.feed import DecisionFeed
from gateway.observability.metrics import GatewayMetrics
from gateway.ratelimit.limiter import RateLimiter


def mirror_counts(
    metrics: GatewayMetrics,
    *,
    verifier: JwtVerifier,
    keystone: KeystoneTokens | None = None,
    limiter: RateLimiter,
    policy: Policy,
    revocations: RevocationStore,
    feed: DecisionFeed,
    boundary: HeaderBoundary,
    client_limits: ClientLimits,
) -> None:
    metrics.mirror(metrics.token_cache.labels(result="hit"), lambda: verifier.cache.hits)
    metrics.mirror(metrics.token_cache.labels(result="miss"), lambda: verifier.cache.misses)
    for key_set in verifier.key_sets:
        metrics.mirror(metrics.jwks_fetches.labels(outcome="ok"), key_set.successful_fetches)
        metrics.mirror(metrics.jwks_fetches.labels(outcome="error"), key_set.failed_fetches)

    if keystone is not None:
        _mirror_keystone(metrics, keystone)

    metrics.mirror(metrics.ratelimit_fail_open, lambda: limiter.fail_open_events)
    metrics.mirror(metrics.ratelimit_breaker_opened, lambda: limiter.breaker.opened)
    if (overrides := limiter.overrides) is not None:
        metrics.mirror(metrics.ratelimit_overrides_refused, lambda: overrides.refused_entries)
        metrics.mirror(
            metrics.background_failures.labels(task="overrides"),
            lambda: overrides.unexpected_failures,
        )
    for rule in limiter.config.rules:
        # Shadow rules refuse nobody; what they would have refused is its own series.
        counts = limiter.shadow_rejections if rule.shadow else limiter.rejections
        family = (
            metrics.ratelimit_shadow_rejections if rule.shadow else metrics.ratelimit_rejections
        )
        metrics.mirror(family.labels(rule=rule.name), partial(counts.__getitem__, rule.name))

    for name in sorted(policy.shadowed):
        refusals = metrics.policy_shadow_refusals.labels(rule=name)
        metrics.mirror(refusals, partial(policy.shadow_refusals.__getitem__, name))

    if isinstance(revocations, RedisRevocationStore):
        metrics.mirror(metrics.revocation_resyncs, lambda: revocations.resyncs)
        metrics.mirror(metrics.revocation_failures, lambda: revocations.outage.count)
        metrics.mirror(metrics.revocation_outages, lambda: revocations.outage.outages)

    metrics.mirror(metrics.feed_dropped, lambda: feed.dropped)
    metrics.mirror(metrics.identity_headers_dropped, lambda: boundary.identity_headers_dropped)
    refused = metrics.client_connections_refused
    metrics.mirror(refused.labels(reason="unparseable"), lambda: client_limits.parse_errors)
    metrics.mirror(refused.labels(reason="header_timeout"), lambda: client_limits.header_timeouts)
    metrics.mirror(
        refused.labels(reason="over_capacity"), lambda: client_limits.refused_connections
    )
    metrics.mirror(
        refused.labels(reason="evicted_at_capacity"), lambda: client_limits.evicted_at_capacity
    )
    metrics.mirror(
        refused.labels(reason="evicted_per_client"), lambda: client_limits.evicted_per_client
    )


def _mirror_keystone(metrics: GatewayMetrics, keystone: KeystoneTokens) -> None:
    validations = metrics.keystone_validations
    metrics.mirror(validations.labels(outcome="valid"), lambda: keystone.accepted)
    metrics.mirror(validations.labels(outcome="refused"), lambda: keystone.refused)
    metrics.mirror(validations.labels(outcome="unavailable"), lambda: keystone.outages.count)
    lookups = metrics.keystone_cache
    metrics.mirror(lookups.labels(result="local_hit"), lambda: keystone.local.hits)
    metrics.mirror(lookups.labels(result="local_miss"), lambda: keystone.local.misses)
    metrics.mirror(metrics.keystone_service_tokens, lambda: keystone.client.service_token_issued)
    shared = keystone.shared
    if shared is not None:
        metrics.mirror(lookups.labels(result="shared_hit"), lambda: shared.hits)
        metrics.mirror(lookups.labels(result="shared_tampered"), lambda: shared.tampered)
        metrics.mirror(metrics.keystone_shared_cache_errors, lambda: shared.failures)
    keystone.client.observe_latency = metrics.keystone_duration.observe
