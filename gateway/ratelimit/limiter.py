"""The limiter: which rules a request counts against, and what the store says.

It also owns the failure mode. When the store cannot answer, fail-open
counts in this process instead (limits stay per-process until Redis is
back); fail-closed refuses with 503. A circuit breaker keeps a dead store
from costing each request a timeout, and brings the store back on its own.

Byte rules are the same three layers over bytes: ``byte_rules`` says which
a route meets (worked out once, at start-up), ``reserve`` takes bytes from
every budget a request meets, or none, and ``refund`` gives back what did
not move; gateway/ratelimit/byte_budget.py keeps one request's account.

The counters on the limiter (``fail_open_events``, ``rejections``, …) are
plain numbers for the metrics endpoint to read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from gateway.authn.identity import Identity
from gateway.config import RateLimitConfig, RateLimitRule
from gateway.http.routes import IMAGE_DATA_ROUTES
from gateway.observability.outages import Outage
from gateway.ratelimit.breaker import CircuitBreaker
from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.overrides import OverrideRefresher
from gateway.ratelimit.store import (
    ByteHold,
    ByteVerdict,
    ByteWindows,
    LimitCheck,
    LimitCheckResult,
    LimitStore,
    ReserveMode,
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


class ByteDecision(NamedTuple):
    """What one reservation against a request's byte rules came to."""

    rules: tuple[RateLimitRule, ...]
    checks: tuple[LimitCheck, ...]
    verdict: ByteVerdict
    # Enforced rules only, as for requests.
    limits: tuple[EnforcedLimit, ...]
    refused: tuple[RateLimitRule, ...]
    # Where the bytes are held: the store's budgets, or (failing open) this
    # process's; a refund goes back there.
    windows: ByteWindows

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

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


# A route's byte rules, as the limiter prepared them (``byte_rules``).
ByteRules = tuple[_Rule, ...]


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
        self._rules = [_Rule.of(rule) for rule in config.rules if not rule.counts_bytes]
        byte_rules = self._byte_rules = [_Rule.of(r) for r in config.rules if r.counts_bytes]
        # Route name -> the byte rules its calls meet, worked out once: a
        # request of any other route pays one dictionary look-up for them.
        self.byte_rules: Mapping[str, ByteRules] = {
            route: rules
            for route in sorted(IMAGE_DATA_ROUTES)
            if (rules := tuple(r for r in byte_rules if route in r.rule.byte_routes))
        }
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
        # Refunds under way: they outlive the request that made them.
        self._refunds: set[asyncio.Task[None]] = set()
        self.refund_failures = 0

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

    async def standing(
        self, identity: Identity, client_ip: str, request_id: str
    ) -> tuple[LimitDecision, ByteDecision | None]:
        """Where the caller stands against every enforced rule, counting nothing:
        its request rules, and its byte rules (None when there are none)."""
        rules = [r for r in self._rules if r.enforced]
        checks = self._checks(rules, identity, client_ip)
        if checks:
            verdict = await self._ask(checks, request_id, count=False)
        else:
            verdict = Verdict(allowed=True, results=(), retry_after=0.0)
        byte_rules = [r for r in self._byte_rules if r.enforced]
        budgets = None
        if byte_rules:
            byte_checks = self._checks(byte_rules, identity, client_ip)
            budgets = await self.reserve(byte_rules, byte_checks, 0, "peek", request_id)
        return self._decision(rules, checks, verdict, ()), budgets

    def byte_checks(
        self, rules: Sequence[_Rule], identity: Identity, client_ip: str
    ) -> tuple[LimitCheck, ...]:
        """Who each byte rule counts, and its limit (a project's override applied)."""
        return self._checks(rules, identity, client_ip)

    async def reserve(
        self,
        rules: ByteRules | Sequence[_Rule],
        checks: tuple[LimitCheck, ...],
        amount: int,
        mode: ReserveMode,
        request_id: str,
    ) -> ByteDecision:
        """Take ``amount`` bytes from every budget of ``checks`` (as ``mode`` says),
        or none; a dry run (explain) only looks."""
        if not self.counting:
            mode = "peek"
        windows: ByteWindows = self.store.byte_windows
        try:
            with self.breaker:
                verdict = await windows.reserve(checks, amount, mode)
            self._answered()
        except StoreUnavailable as exc:
            self._unavailable(exc, request_id)
            windows = self._fallback.byte_windows
            verdict = self._fallback.byte_windows.reserve_now(checks, amount, mode)
        refused: list[RateLimitRule] = []
        for r, check, result in zip(rules, checks, verdict.results, strict=True):
            if not result.retry_after:
                continue
            if not r.enforced:
                self.shadow_rejections[r.name] += 1
                log.info("shadow byte rule %s would refuse %d bytes of %s", r.name, amount,
                         check.subject, extra={"request_id": request_id})  # fmt: skip
            elif not verdict.allowed:
                self.rejections[r.name] += 1
                refused.append(r.rule)
        limits = tuple(
            [
                EnforcedLimit(r.rule, check.limit, result)
                for r, check, result in zip(rules, checks, verdict.results, strict=True)
                if r.enforced
            ]
        )
        return ByteDecision(
            tuple([r.rule for r in rules]), checks, verdict, limits, tuple(refused), windows
        )

    def refund(self, windows: ByteWindows, holds: Sequence[ByteHold], request_id: str) -> None:
        """Give ``holds`` back, in the background: a refund outlives its request
        (a client that hung up), and never holds up an answer."""
        if not holds or not self.counting:
            return
        task = asyncio.get_running_loop().create_task(self._refund(windows, holds, request_id))
        self._refunds.add(task)
        task.add_done_callback(self._refunds.discard)

    async def _refund(
        self, windows: ByteWindows, holds: Sequence[ByteHold], request_id: str
    ) -> None:
        try:
            if windows is self._fallback.byte_windows:
                self._fallback.byte_windows.refund_now(holds)
            else:
                with self.breaker:
                    await windows.refund(holds)
                self._answered()
        except (StoreUnavailable, StoreFault) as exc:
            # The bytes stay counted until they leave the window: never more
            # than the budget, only less of it for a while.
            self.refund_failures += 1
            log.warning("could not refund %d bytes: %s", sum(h.amount for h in holds), exc,
                        extra={"request_id": request_id})  # fmt: skip

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
            with self.breaker:
                verdict = await (self.store.acquire(checks) if count else self.store.peek(checks))
            self._answered()
            return verdict
        except StoreUnavailable as exc:
            self._unavailable(exc, request_id)
            return self._fallback.decide_now(checks, count=count)

    def _answered(self) -> None:
        """The store answered: an outage, if there was one, is over."""
        if self.outage.since is not None:
            self.outage.recovered()

    def _unavailable(self, exc: StoreUnavailable, request_id: str) -> None:
        """The failure mode: count in process (open), or refuse (closed)."""
        self._log_failure(exc, request_id)
        if self.config.failure_mode == "closed":
            self.fail_closed_events += 1
            raise LimiterUnavailable(str(exc)) from None
        self.fail_open_events += 1

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
        if self._refunds:
            # Each ends within the store's timeout.
            await asyncio.wait(self._refunds)
        await self.breaker.close()
        if self.overrides is not None:
            await self.overrides.close()
        await self.store.close()
