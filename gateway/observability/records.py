"""What one finished request was: the access record, and the audit record of an image API call.

Both are built from the RequestContext the chain filled in, never from the
request's headers, so the token cannot end up in either.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from typing import Any

from gateway.http.upstream import UPSTREAM_CAUSE_PREFIX
from gateway.middleware.context import RequestContext
from gateway.ratelimit.limiter import LIMITER_UNAVAILABLE

# The route whose successful calls are "deleted" in the audit trail.
DELETE_ROUTE = "delete_image"

# nginx's "client closed request": the client went away before the answer.
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class LimitSnapshot:
    """One rate-limit rule as it stood for one caller after this request."""

    subject: str
    rule: str
    limit: int
    period: int
    remaining: int
    reset_after: float

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _LIMIT_FIELDS}


@dataclass(frozen=True, slots=True)
class AccessRecord:
    time: float
    request_id: str
    global_request_id: str | None
    method: str
    path: str
    route: str | None
    image_id: str | None
    project: str | None
    user: str | None
    client: str | None
    status: int
    decision: str
    # The fault's message when the gateway refused: the "why".
    reason: str | None
    upstream_status: int | None
    upstream_error: str | None
    # The limiter's verdict: allowed, limited, unavailable (failed closed),
    # or None when no rule matched.
    limiter: str | None
    limits: tuple[LimitSnapshot, ...]
    duration_ms: float
    upstream_ms: float | None
    pid: int

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy was 40% of the cost of
        # reporting a request (bench/observability_overhead.py).
        record = {name: getattr(self, name) for name in _ACCESS_FIELDS}
        record["limits"] = [limit.as_dict() for limit in self.limits]
        return record


_LIMIT_FIELDS = tuple(f.name for f in fields(LimitSnapshot))
_ACCESS_FIELDS = tuple(f.name for f in fields(AccessRecord))


def upstream_error_kind(ctx: RequestContext) -> str | None:
    cause = ctx.fault.cause if ctx.fault is not None else None
    if cause is not None and cause.startswith(UPSTREAM_CAUSE_PREFIX):
        return cause.removeprefix(UPSTREAM_CAUSE_PREFIX)
    if ctx.fault is None and ctx.upstream_status is not None and ctx.upstream_status >= 500:
        # Relayed unchanged (upstream.pass_through_errors), still a failure.
        return "http_5xx"
    return None


def decision_of(ctx: RequestContext, status: int) -> str:
    """Which step of the chain settled the request.

    ``forwarded`` means the backend answered (its status is the request's,
    even when that is an error); every other value names who refused.
    """
    if upstream_error_kind(ctx) not in (None, "http_5xx"):
        return "upstream_unavailable"
    if ctx.upstream_status is not None:
        return "forwarded"
    if ctx.rate_limit is not None and not ctx.rate_limit.verdict.allowed:
        return "limited"
    if ctx.fault is not None and ctx.fault.cause == LIMITER_UNAVAILABLE:
        return "limiter_unavailable"
    if status == CLIENT_CLOSED:
        return "client_closed"
    if status >= 500:
        return "error"
    if status == 401:
        return "unauthenticated"
    if ctx.identity is not None and status in (403, 404):
        return "denied"
    return "rejected"


def limiter_outcome(ctx: RequestContext) -> str | None:
    if ctx.fault is not None and ctx.fault.cause == LIMITER_UNAVAILABLE:
        return "unavailable"
    if ctx.rate_limit is None:
        return None
    return "allowed" if ctx.rate_limit.verdict.allowed else "limited"


def limit_states(ctx: RequestContext) -> tuple[LimitSnapshot, ...]:
    decision = ctx.rate_limit
    if decision is None:
        return ()
    # The checks the limiter made: their subjects and limits (a project's
    # override included) are the ones it enforced, not recomputed here.
    return tuple(
        LimitSnapshot(
            subject=check.subject,
            rule=check.rule,
            limit=check.limit,
            period=int(check.period),
            remaining=result.remaining,
            reset_after=round(result.reset_after, 3),
        )
        for check, result in zip(decision.checks, decision.verdict.results, strict=True)
    )


def access_record(
    ctx: RequestContext, *, method: str, path: str, client_ip: str, status: int
) -> AccessRecord:
    identity = ctx.identity
    return AccessRecord(
        time=time.time(),
        request_id=ctx.request_id,
        global_request_id=ctx.global_request_id,
        method=method,
        path=path,
        route=ctx.route.name if ctx.route is not None else None,
        image_id=ctx.params.get("image_id"),
        project=identity.project_id if identity is not None else None,
        user=identity.user_id if identity is not None else None,
        client=client_ip or None,
        status=status,
        decision=decision_of(ctx, status),
        reason=ctx.fault.message if ctx.fault is not None else None,
        upstream_status=ctx.upstream_status,
        upstream_error=upstream_error_kind(ctx),
        limiter=limiter_outcome(ctx),
        limits=limit_states(ctx),
        duration_ms=round((time.monotonic() - ctx.started) * 1000, 3),
        upstream_ms=None if ctx.upstream_seconds is None else round(ctx.upstream_seconds * 1000, 3),
        pid=os.getpid(),
    )


def audit_outcome(record: AccessRecord) -> str:
    if record.decision == "forwarded":
        if not 200 <= record.status < 300:
            return "refused_by_backend"
        return "deleted" if record.route == DELETE_ROUTE else "succeeded"
    return record.decision


def audit_record(record: AccessRecord) -> dict[str, Any]:
    """Who tried which operation on which image, and what came of it."""
    return {
        "time": record.time,
        "route": record.route,
        "method": record.method,
        "request_id": record.request_id,
        "global_request_id": record.global_request_id,
        "user": record.user,
        "project": record.project,
        "image_id": record.image_id,
        "outcome": audit_outcome(record),
        "status": record.status,
        "upstream_status": record.upstream_status,
        "reason": record.reason,
        "client": record.client,
        "pid": record.pid,
    }
