"""One request's image bytes against the byte rules its route meets: reserve, then refund.

Bytes are reserved before they move: a known length all at once, a body of
unknown length a slice at a time as it flows (``cover``: one store call per
slice, and none while the bytes moving are covered already). Whoever moves
the bytes counts them and says so in ``moved`` (an upload: the upstream
client, whose meter this is; a download: the proxy's relay); once the
request is done, ``settle`` gives back what was reserved and did not move
(a client that hung up, a backend that failed), the latest reservations
first. An upload the backend refused (an error status) stored nothing: all
of it is given back (``forgive``). One the gateway cut, or a client
abandoned, pays for what crossed: otherwise sending up to the budget and
being cut could be repeated for free.
"""

from __future__ import annotations

from gateway.ratelimit.limiter import ByteDecision, ByteRules, EnforcedLimit, RateLimiter
from gateway.ratelimit.store import ByteHold, LimitCheck, LimitCheckResult, ReserveMode


class BudgetRefused(Exception):
    """The byte budgets cannot hold a reservation."""

    def __init__(self, decision: ByteDecision, amount: int) -> None:
        names = ", ".join(rule.name for rule in decision.refused)
        super().__init__(f"{amount} bytes over byte limit {names}")
        self.decision = decision
        self.amount = amount


class ByteBudget:
    __slots__ = (
        "_checks",
        "_forgiven",
        "_limiter",
        "_refunded",
        "_request_id",
        "_reservations",
        "_rules",
        "decision",
        "moved",
        "refusal",
        "reserved",
        "slice",
    )

    def __init__(
        self,
        limiter: RateLimiter,
        rules: ByteRules,
        checks: tuple[LimitCheck, ...],
        request_id: str,
        slice_bytes: int,
    ) -> None:
        self._limiter = limiter
        self._rules = rules
        self._checks = checks
        self._request_id = request_id
        self.slice = slice_bytes
        # Bytes held now (reserved, less what was given back), and moved.
        self.reserved = 0
        self.moved = 0
        # The latest answer, and the one that refused (if one did).
        self.decision: ByteDecision | None = None
        self.refusal: ByteDecision | None = None
        self._reservations: list[ByteDecision] = []
        # Bytes given back, by rule.
        self._refunded: dict[str, int] = {}
        self._forgiven = False

    @property
    def limits(self) -> tuple[EnforcedLimit, ...]:
        """Where the caller stands against each enforced byte rule, as last told."""
        return () if self.decision is None else self.decision.limits

    def standing(self) -> list[tuple[LimitCheck, LimitCheckResult]]:
        """Each byte rule as the last answer left it, with what was given back since."""
        if self.decision is None:
            return []
        refunded = self._refunded
        return [
            (check, result._replace(remaining=min(check.limit, result.remaining + back)))
            if (back := refunded.get(check.rule))
            else (check, result)
            for check, result in zip(
                self.decision.checks, self.decision.verdict.results, strict=True
            )
        ]

    async def reserve(self, amount: int) -> None:
        """All of ``amount``, or BudgetRefused."""
        await self._take(amount, "all")

    async def reserve_slice(self) -> None:
        """Up to a slice (what the budgets hold of it), or BudgetRefused when they hold none."""
        await self._take(self.slice, "upto")

    async def cover(self, through: int) -> None:
        """Reserve slices until the first ``through`` bytes are reserved."""
        while through > self.reserved:
            await self.reserve_slice()

    async def _take(self, amount: int, mode: ReserveMode) -> None:
        decision = await self._limiter.reserve(
            self._rules, self._checks, amount, mode, self._request_id
        )
        self.decision = decision
        if not decision.allowed:
            self.refusal = decision
            raise BudgetRefused(decision, amount)
        self.reserved += decision.verdict.granted
        self._reservations.append(decision)

    def forgive(self) -> None:
        """The backend refused the body: what moved is given back too."""
        self._forgiven = True

    def settle(self) -> None:
        """Give back what was reserved and did not move, once."""
        unmoved = self.reserved - (0 if self._forgiven else self.moved)
        back: dict[int, tuple[ByteDecision, list[ByteHold]]] = {}
        while unmoved > 0 and self._reservations:
            decision = self._reservations.pop()
            part = min(unmoved, decision.verdict.granted)
            holds = [
                hold._replace(amount=min(hold.amount, part)) for hold in decision.verdict.holds
            ]
            back.setdefault(id(decision.windows), (decision, []))[1].extend(holds)
            for hold in holds:
                self._refunded[hold.check.rule] = (
                    self._refunded.get(hold.check.rule, 0) + hold.amount
                )
            unmoved -= part
            self.reserved -= part
        self._reservations.clear()
        for decision, holds in back.values():
            self._limiter.refund(decision.windows, holds, self._request_id)
