"""What one finished request was: one record, built and serialized once.

The same record is the access log line, the audit record of an image API
call and what the dashboard shows; each adds its own few leading keys to the one JSON
text (``RequestRecord.fields_json``) instead of serializing it again. It
is built from the RequestContext the chain filled in, never from the
request's headers, so the token cannot end up in it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal, NotRequired, TypedDict

import orjson
from aiohttp import web

from gateway.http.upstream import UPSTREAM_CAUSE_PREFIX
from gateway.observability.logs import one_line, utc_iso_ms
from gateway.ratelimit.limiter import LIMITER_UNAVAILABLE
from gateway.ratelimit.store import LimitCheck, LimitCheckResult
from gateway.request_context import RequestContext

# The route whose successful calls are "deleted" in the audit trail.
DELETE_ROUTE = "delete_image"

# nginx's "client closed request": the client went away before the answer.
CLIENT_CLOSED = 499


def failure_status(exc: BaseException) -> int:
    """The status a request that ended in ``exc`` is recorded with: the client
    gone, an HTTP exception's own, else 500."""
    if isinstance(exc, asyncio.CancelledError):
        return CLIENT_CLOSED
    if isinstance(exc, web.HTTPException):
        return exc.status
    return 500


def _ms(seconds: float) -> float:
    """Seconds as milliseconds to three places: ``round(seconds * 1000, 3)``,
    the same value, without ``round``'s decimal conversion (half the cost)."""
    return round(seconds * 1_000_000) / 1000


def _thousandths(value: float) -> float:
    return round(value * 1000) / 1000


class LimitState(TypedDict):
    """One rate-limit rule as it stood for one caller after this request."""

    subject: str
    rule: str
    limit: int
    period: int
    remaining: int
    reset_after: float
    # Byte rules only: the limit and what remains are bytes, and whether
    # this rule refused the request (it may refuse with bytes remaining,
    # fewer than asked).
    counts: NotRequired[Literal["bytes"]]
    refused: NotRequired[bool]


class RecordFields(TypedDict):
    """Everything of a record but its time and request id, which lead every line."""

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
    limits: list[LimitState]
    duration_ms: float
    upstream_ms: float | None
    pid: int
    # Audited routes only (the image API's): what came of it. A record with
    # an outcome is an audit record too.
    outcome: NotRequired[str]


class RequestRecord:
    __slots__ = ("_at", "_fields_json", "_text", "fields", "request_id", "time")

    def __init__(self, time: float, request_id: str, fields: RecordFields) -> None:
        self.time = time
        self.request_id = request_id
        self.fields = fields
        self._fields_json: str | None = None
        self._at: str | None = None
        self._text: str | None = None

    @property
    def audited(self) -> bool:
        return "outcome" in self.fields

    @property
    def fields_json(self) -> str:
        """``fields`` as one JSON object: the only serialization of the record."""
        if self._fields_json is None:
            self._fields_json = one_line(orjson.dumps(self.fields).decode())
        return self._fields_json

    def at(self) -> str:
        """``time`` as ISO 8601 text, made once for the access line and the audit record."""
        if self._at is None:
            self._at = utc_iso_ms(self.time)
        return self._at

    def json(self, **leading: Any) -> str:
        """The record as one JSON object: ``leading`` keys first, then its time,
        request id and fields (``leading`` must not name any of them).

        Without ``leading`` (the dashboard's text) it is made once; the audit
        line is that text with its own keys put in front of it."""
        text = self._text
        if text is None:
            head = orjson.dumps({"time": self.time, "request_id": self.request_id})
            text = self._text = head[:-1].decode() + "," + self.fields_json[1:]
        if not leading:
            return text
        return orjson.dumps(leading)[:-1].decode() + "," + text[1:]

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "request_id": self.request_id, **self.fields}


def upstream_error_kind(ctx: RequestContext) -> str | None:
    cause = ctx.fault.cause if ctx.fault is not None else None
    if cause is not None and cause.startswith(UPSTREAM_CAUSE_PREFIX):
        return cause.removeprefix(UPSTREAM_CAUSE_PREFIX)
    if ctx.fault is None and ctx.upstream_status is not None and ctx.upstream_status >= 500:
        # Relayed unchanged (upstream.pass_through_errors), still a failure.
        return "http_5xx"
    return None


def decision_of(ctx: RequestContext, status: int, upstream_error: str | None) -> str:
    """Which step of the chain settled the request.

    ``forwarded`` means the backend answered (its status is the request's,
    even when that is an error); every other value names who refused.
    """
    if upstream_error not in (None, "http_5xx"):
        return "upstream_unavailable"
    if ctx.upstream_status is not None:
        return "forwarded"
    if ctx.rate_limit is not None and not ctx.rate_limit.verdict.allowed:
        return "limited"
    if ctx.byte_budget is not None and ctx.byte_budget.refusal is not None:
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
    budget = ctx.byte_budget
    if budget is not None and budget.refusal is not None:
        return "limited"
    if ctx.rate_limit is None:
        return None if budget is None or budget.decision is None else "allowed"
    return "allowed" if ctx.rate_limit.verdict.allowed else "limited"


def _state(check: LimitCheck, result: LimitCheckResult) -> LimitState:
    return {
        "subject": check.subject,
        "rule": check.rule,
        "limit": check.limit,
        "period": int(check.period),
        "remaining": result.remaining,
        "reset_after": _thousandths(result.reset_after),
    }


def limit_states(ctx: RequestContext) -> list[LimitState]:
    decision = ctx.rate_limit
    # The checks the limiter made: their subjects and limits (a project's
    # override included) are the ones it enforced, not recomputed here.
    states = (
        []
        if decision is None
        else [
            _state(check, result)
            for check, result in zip(decision.checks, decision.verdict.results, strict=True)
        ]
    )
    budget = ctx.byte_budget
    if budget is not None and budget.decision is not None:
        refused = {rule.name for rule in budget.decision.refused}
        for check, result in budget.standing():
            state = _state(check, result)
            state["counts"] = "bytes"
            state["refused"] = check.rule in refused
            states.append(state)
    return states


def audit_outcome(decision: str, status: int, route: str | None) -> str:
    if decision == "forwarded":
        if not 200 <= status < 300:
            return "refused_by_backend"
        return "deleted" if route == DELETE_ROUTE else "succeeded"
    return decision


def request_record(
    ctx: RequestContext, *, method: str, path: str, client_ip: str, status: int, pid: int
) -> RequestRecord:
    identity = ctx.identity
    route = ctx.route.name if ctx.route is not None else None
    upstream_status = ctx.upstream_status
    if ctx.fault is None and upstream_status is not None and upstream_status < 500:
        # Most requests: the backend answered, nobody refused. What
        # upstream_error_kind and decision_of would say, without asking.
        upstream_error, decision = None, "forwarded"
    else:
        upstream_error = upstream_error_kind(ctx)
        decision = decision_of(ctx, status, upstream_error)
    fields: RecordFields = {
        "global_request_id": ctx.global_request_id,
        "method": method,
        "path": path,
        "route": route,
        "image_id": ctx.params.get("image_id"),
        "project": identity.project_id if identity is not None else None,
        "user": identity.user_id if identity is not None else None,
        "client": client_ip or None,
        "status": status,
        "decision": decision,
        "reason": ctx.fault.message if ctx.fault is not None else None,
        "upstream_status": ctx.upstream_status,
        "upstream_error": upstream_error,
        "limiter": limiter_outcome(ctx),
        "limits": limit_states(ctx),
        "duration_ms": _ms(time.monotonic() - ctx.started),
        "upstream_ms": None if ctx.upstream_seconds is None else _ms(ctx.upstream_seconds),
        "pid": pid,
    }
    if ctx.route is not None and ctx.route.audited:
        fields["outcome"] = audit_outcome(decision, status, route)
    return RequestRecord(time.time(), ctx.request_id, fields)
