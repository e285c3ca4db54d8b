"""The limiter: which rules a request counts against, and what the store says.

It also owns the failure mode. When the store cannot answer, fail-open
counts in this process instead (limits stay per-process until Redis is
back); fail-closed refuses with 503. A circuit breaker keeps a dead store
from costing each request a timeout, and brings the store back on its own.

The counters on the limiter (``fail_open_events``, ``rejections``, …) are
plain numbers for the metrics endpoint to read.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from gateway.authn.identity import Identity
from gateway.config import RateLimitConfig, RateLimitRule
from gateway.observability.outages import Outage
from gateway.ratelimit.breaker import CircuitBreaker
from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.overrides import OverrideRefresher
from gateway.ratelimit.store import (
    LimitCheck,
    LimitCheckResult,
    LimitStore,
    StoreFault,
    StoreUnavailable,
    Verdict,
)

log = logging.getLogger("gateway.ratelimit")

# What a refusal because the store could not answer (fail closed) is recorded as.
LIMITER_UNAVAILABLE = "ratelimit_unavailable"
_DEFAULT_PROBE_INTERVAL = 0.25
# Which rules a (method, route) can match is worked out once per pair; the
# pairs are the routes' own, but a client picks the method, so the table is
# bounded all the same.
_PLANS_KEPT = 256
# A path pattern that matches any path is not searched.
_ANY_PATH = ".*"


class LimiterUnavailable(Exception):
    """The store cannot decide and the limiter is configured to fail closed."""


class EnforcedLimit(NamedTuple):
    """Where a caller stands against one enforced rule."""

    rule: RateLimitRule
    # The rule's value, or the caller's project's override of it.
    limit: int
    result: LimitCheckResult


class LimitDecision(NamedTuple):
    # Every rule decided, shadow ones too, and what was asked of the store
    # for each (subject, effective limit), in the order of verdict.results.
    rules: tuple[RateLimitRule, ...]
    checks: tuple[LimitCheck, ...]
    verdict: Verdict
    # Enforced rules only: shadow rules never show to the caller.
    limits: tuple[EnforcedLimit, ...]
    refused: tuple[RateLimitRule, ...]

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    @property
    def retry_after(self) -> float:
        return self.verdict.retry_after

    @property
    def refused_globally(self) -> bool:
        return any(rule.by == "global" for rule in self.refused)


# Who a caller is counted as (LimitCheck.subject), by a rule's ``by``: the
# key its counts live under in the store.
SubjectOf = Callable[[Identity, str], str]
SUBJECTS: Mapping[str, SubjectOf] = {
    "project": lambda identity, client_ip: f"project:{identity.project_id}",
    "user": lambda identity, client_ip: f"user:{identity.user_id}",
    "ip": lambda identity, client_ip: f"ip:{client_ip}",
    "global": lambda identity, client_ip: "global",
}


class _Rule(NamedTuple):
    """A configured rule with what each decision needs of it worked out once."""

    rule: RateLimitRule
    name: str
    by: str
    subject: SubjectOf
    value: int
    period: int
    enforced: bool
    # None when the rule matches any path.
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, rule: RateLimitRule) -> _Rule:
        pattern = None if rule.path == _ANY_PATH else re.compile(rule.path)
        return cls(
            rule,
            rule.name,
            rule.by,
            SUBJECTS[rule.by],
            rule.value,
            rule.period_seconds,
            not rule.shadow,
            pattern,
        )


class _Plan(NamedTuple):
    """The rules a (method, route) can match, before looking at the path."""

    rules: tuple[_Rule, ...]
    any_path: bool


class RateLimiter:
    def __init__(
        self,
        config: RateLimitConfig,
        store: LimitStore,
        overrides: OverrideRefresher | None = None,
        *,
        counting: bool = True,
    ) -> None:
        self.config = config
        # False for a dry run (explain): decide as usual, take nothing.
        self.counting = counting
        self.store = store
        self.overrides = overrides
        self._rules = [_Rule.of(rule) for rule in config.rules]
        self._plans: dict[tuple[str, str | None], _Plan] = {}
        self._fallback = MemoryStore()
        redis = config.redis
        # A store outage (only Redis fails) is logged as it begins, counted,
        # and logged as it ends: under load it would otherwise be a line a request.
        self.outage = Outage("Redis (rate limits)", log)
        self.breaker = CircuitBreaker(
            self._probe,
            redis.probe_interval if redis else _DEFAULT_PROBE_INTERVAL,
            failures=redis.breaker_failures if redis else 1,
            window=redis.breaker_window if redis else float("inf"),
        )
        self.fail_open_events = 0
        self.fail_closed_events = 0
        self.rejections: Counter[str] = Counter()
        self.shadow_rejections: Counter[str] = Counter()

    def _matching(self, method: str, path: str, route: str | None) -> Sequence[_Rule]:
        plan = self._plans.get((method, route))
        if plan is None:
            plan = self._plan(method, route)
        if plan.any_path:
            return plan.rules
        return [r for r in plan.rules if r.pattern is None or r.pattern.search(path)]

    def _plan(self, method: str, route: str | None) -> _Plan:
        rules = tuple(
            r
            for r in self._rules
            if ("*" in r.rule.methods or method in r.rule.methods)
            and (not r.rule.routes or route in r.rule.routes)
        )
        plan = _Plan(rules, all(r.pattern is None for r in rules))
        if len(self._plans) < _PLANS_KEPT:
            self._plans[(method, route)] = plan
        return plan

    def _checks(
        self, rules: Sequence[_Rule], identity: Identity, client_ip: str
    ) -> tuple[LimitCheck, ...]:
        table = self.overrides.table if self.overrides is not None else None
        return tuple(
            [
                LimitCheck(
                    r.subject(identity, client_ip),
                    r.name,
                    r.value
                    if table is None or r.by == "global"
                    else table.get((identity.project_id, r.name), r.value),
                    r.period,
                    r.enforced,
                )
                for r in rules
            ]
        )

    async def decide(
        self,
        method: str,
        path: str,
        identity: Identity,
        client_ip: str,
        request_id: str,
        route: str | None = None,
    ) -> LimitDecision | None:
        rules = self._matching(method, path, route)
        if not rules:
            return None
        checks = self._checks(rules, identity, client_ip)
        verdict = await self._ask(checks, request_id, count=self.counting)
        refused: list[RateLimitRule] = []
        for r, check, result in zip(rules, checks, verdict.results, strict=True):
            if not result.retry_after:
                continue
            if not r.enforced:
                self.shadow_rejections[r.name] += 1
                log.info(
                    "shadow rule %s would refuse %s",
                    r.name,
                    check.subject,
                    extra={"request_id": request_id},
                )
            elif not verdict.allowed:
                self.rejections[r.name] += 1
                refused.append(r.rule)
        return self._decision(rules, checks, verdict, tuple(refused))

    async def standing(self, identity: Identity, client_ip: str, request_id: str) -> LimitDecision:
        """Where the caller stands against every enforced rule, counting nothing."""
        rules = [r for r in self._rules if r.enforced]
        checks = self._checks(rules, identity, client_ip)
        if checks:
            verdict = await self._ask(checks, request_id, count=False)
        else:
            verdict = Verdict(allowed=True, results=(), retry_after=0.0)
        return self._decision(rules, checks, verdict, ())

    @staticmethod
    def _decision(
        rules: Sequence[_Rule],
        checks: tuple[LimitCheck, ...],
        verdict: Verdict,
        refused: tuple[RateLimitRule, ...],
    ) -> LimitDecision:
        limits = tuple(
            [
                EnforcedLimit(r.rule, check.limit, result)
                for r, check, result in zip(rules, checks, verdict.results, strict=True)
                if r.enforced
            ]
        )
        return LimitDecision(tuple([r.rule for r in rules]), checks, verdict, limits, refused)

    async def _ask(self, checks: Sequence[LimitCheck], request_id: str, *, count: bool) -> Verdict:
        try:
            if self.breaker.is_open:
                raise StoreUnavailable("circuit open after a failure; probing")
            try:
                verdict = await (self.store.acquire(checks) if count else self.store.peek(checks))
            except StoreUnavailable as exc:
                self.breaker.record_failure(exc)
                raise
            except StoreFault:
                # Redis answered: an error in the script or a bad key is a bug
                # (a 500 for this request, logged with its traceback), not an
                # outage that should take every tenant off the store.
                self.breaker.record_success()
                raise
            self.breaker.record_success()
            if self.outage.since is not None:
                self.outage.recovered()
            return verdict
        except StoreUnavailable as exc:
            self._log_failure(exc, request_id)
            if self.config.failure_mode == "closed":
                self.fail_closed_events += 1
                raise LimiterUnavailable(str(exc)) from None
            self.fail_open_events += 1
            return self._fallback.decide_now(checks, count=count)

    def _log_failure(self, exc: StoreUnavailable, request_id: str) -> None:
        self.outage.failed(f"{exc}; failing {self.config.failure_mode}", request_id)

    async def _probe(self) -> None:
        """The breaker's probe: the store answering again ends the outage."""
        await self.store.ping()
        self.outage.recovered()

    def start(self) -> None:
        if self.overrides is not None:
            self.overrides.start()

    async def close(self) -> None:
        await self.breaker.close()
        if self.overrides is not None:
            await self.overrides.close()
        await self.store.close()
