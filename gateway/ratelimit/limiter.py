"""The limiter: which rules a request counts against, and what the store says.

It also owns the failure mode. When the store cannot answer, fail-open
counts in this process instead (limits stay per-process until Redis is
back); fail-closed refuses with 503.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from gateway.config import RateLimitConfig, RateLimitRule
from gateway.faults import GatewayFault
from gateway.identity import Identity
from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.store import Check, LimitStore, StoreUnavailable, Verdict

log = logging.getLogger("gateway.ratelimit")

# The fault cause of a refusal because the store could not answer (fail closed).
LIMITER_UNAVAILABLE = "ratelimit_unavailable"
# A Redis outage under load would otherwise log once per request.
_LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Decision:
    rules: tuple[RateLimitRule, ...]
    verdict: Verdict


class RateLimiter:
    def __init__(self, config: RateLimitConfig, store: LimitStore) -> None:
        self.config = config
        self.store = store
        self._rules = [(rule, re.compile(rule.path)) for rule in config.rules]
        self._fallback = MemoryStore()
        self._last_failure_log = -_LOG_EVERY_SECONDS
        self.fail_open_events = 0

    def matching(self, method: str, path: str) -> tuple[RateLimitRule, ...]:
        return tuple(
            rule
            for rule, pattern in self._rules
            if ("*" in rule.methods or method in rule.methods) and pattern.search(path)
        )

    @staticmethod
    def subject(rule: RateLimitRule, identity: Identity, client_ip: str) -> str:
        if rule.by == "user":
            return f"user:{identity.user_id}"
        if rule.by == "ip":
            return f"ip:{client_ip}"
        return f"project:{identity.project_id}"

    async def decide(
        self, method: str, path: str, identity: Identity, client_ip: str, request_id: str
    ) -> Decision | None:
        rules = self.matching(method, path)
        if not rules:
            return None
        checks = [
            Check(self.subject(r, identity, client_ip), r.name, r.value, r.period_seconds)
            for r in rules
        ]
        try:
            verdict = await self.store.acquire(checks)
        except StoreUnavailable as exc:
            self._log_failure(exc, request_id)
            if self.config.failure_mode == "closed":
                raise GatewayFault(
                    503,
                    "The service is temporarily unavailable.",
                    details="Rate limiting cannot be checked right now.",
                    cause=LIMITER_UNAVAILABLE,
                ) from None
            self.fail_open_events += 1
            verdict = self._fallback.acquire_now(checks)
        return Decision(rules=rules, verdict=verdict)

    def _log_failure(self, exc: StoreUnavailable, request_id: str) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= _LOG_EVERY_SECONDS:
            self._last_failure_log = now
            log.warning(
                "rate-limit store unavailable (%s), failing %s",
                exc,
                self.config.failure_mode,
                extra={"request_id": request_id},
            )

    async def close(self) -> None:
        await self.store.close()
