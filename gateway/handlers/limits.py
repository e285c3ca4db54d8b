"""``GET /limits``: the caller's own rate limits, answered by the gateway itself.

The body has the shape Repose and the OpenStack compute API give it, so
existing clients parse it::

    {"limits": {"rate": [{"name": "deletes", "uri": "^/(v2/)?images/",
                          "regex": "^/(v2/)?images/",
                          "limit": [{"verb": "DELETE", "value": 100,
                                     "remaining": 99, "unit": "MINUTE",
                                     "next-available": "2026-11-29T10:00:00Z"}]}],
                "absolute": {}}}

A byte rule's entry says so (``"counts": "bytes"``), names its routes, and
gives its value and what remains in bytes, with ``reset``: when the oldest
bytes it counts leave the window, so that more remain.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.http.faults import GatewayFault
from gateway.http.routes import ROUTES
from gateway.middleware.rate_limit import request_client_ip, unavailable_fault
from gateway.ratelimit.limiter import EnforcedLimit, LimiterUnavailable, RateLimiter
from gateway.request_context import context_of

_JSON_RANGES = frozenset({"*/*", "application/*", "application/json"})
_METHOD_OF_ROUTE = {route.name: route.method for route in ROUTES}


def accepts_json(accept: str | None) -> bool:
    """Whether an Accept header admits application/json (RFC 9110 §12.5.1)."""
    if accept is None or not accept.strip():
        return True
    for media_range in accept.split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type.lower() in _JSON_RANGES and quality > 0:
            return True
    return False


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _byte_entry(state: EnforcedLimit, now: datetime) -> dict[str, Any]:
    rule, result = state.rule, state.result
    routes = sorted(rule.byte_routes)
    reset = _iso(now + timedelta(seconds=math.ceil(result.reset_after)))
    return {
        "name": rule.name,
        "uri": rule.path,
        "regex": rule.path,
        "routes": routes,
        "limit": [
            {
                "verb": verb,
                "value": state.limit,
                "remaining": result.remaining,
                "unit": rule.unit.upper(),
                "counts": "bytes",
                "next-available": reset if result.remaining == 0 else _iso(now),
                "reset": reset,
            }
            for verb in sorted({_METHOD_OF_ROUTE[route] for route in routes})
        ],
    }


def _rate_entry(state: EnforcedLimit, now: datetime) -> dict[str, Any]:
    rule, result = state.rule, state.result
    wait = math.ceil(result.retry_after) if result.remaining == 0 else 0
    next_available = _iso(now + timedelta(seconds=wait))
    verbs = ["ALL"] if "*" in rule.methods else rule.methods
    return {
        "name": rule.name,
        "uri": rule.path,
        "regex": rule.path,
        "limit": [
            {
                "verb": verb,
                "value": state.limit,
                "remaining": result.remaining,
                "unit": rule.unit.upper(),
                "next-available": next_available,
            }
            for verb in verbs
        ],
    }


class LimitsEndpoint:
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        if not accepts_json(request.headers.get("Accept")):
            raise GatewayFault(
                406,
                "The limits are only available as application/json.",
            )
        assert ctx.identity is not None
        try:
            standing, budgets = await self.limiter.standing(
                ctx.identity, request_client_ip(self.limiter, request), ctx.request_id
            )
        except LimiterUnavailable:
            raise unavailable_fault() from None
        now = datetime.now(UTC)
        rates = [_rate_entry(s, now) for s in standing.limits]
        if budgets is not None:
            rates += [_byte_entry(s, now) for s in budgets.limits]
        body = {"limits": {"rate": rates, "absolute": {}}}
        return web.json_response(body)
