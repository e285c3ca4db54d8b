"""The dashboard: four pages, their live fragments, and the JSON behind them.

Every page is rendered whole on the server (it reads fine without
JavaScript); dashboard.js then re-fetches each ``data-live`` region as an
HTML fragment (``?partial=<name>``) every ``admin.refresh_seconds``, so the
page updates without a reload and rendering lives in the templates only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from pydantic import ByteSize

from gateway.admin.keystone_stats import keystone_stats
from gateway.http.faults import GatewayFault
from gateway.http.routes import Handler
from gateway.observability.decisions import DecisionLog
from gateway.observability.metrics import MetricsSource
from gateway.observability.readiness import Readiness

MAX_QUERY_CHARS = 200
MAX_ROWS = 500
DEFAULT_ROWS = 100

Context = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Dashboard:
    decisions: DecisionLog
    readiness: Readiness
    metrics: MetricsSource

    async def overview(self, request: web.Request) -> Context:
        health = await self.readiness.report()
        return {
            "overview": self.decisions.overview(),
            "health": health,
            "recent": self.decisions.search(limit=10),
            # Only a gateway that trusts Keystone has a Keystone check.
            "keystone": (
                keystone_stats(await self.metrics.take())
                if "keystone" in health["checks"]
                else None
            ),
        }

    async def limits(self, request: web.Request) -> Context:
        query, rows = search_args(request)
        return {"query": query, "limits": self.decisions.limit_states(query, rows)}

    async def decisions_page(self, request: web.Request) -> Context:
        query, rows = search_args(request)
        return {"query": query, "decisions": self.decisions.search(query, rows)}

    async def audit(self, request: web.Request) -> Context:
        query, rows = search_args(request)
        return {"query": query, "audit": self.decisions.audit_trail(query, rows)}


def search_args(request: web.Request) -> tuple[str, int]:
    """``q`` and ``limit`` from the query string; a bad value is a 400 fault."""
    query = request.query.get("q", "")
    if len(query) > MAX_QUERY_CHARS:
        raise GatewayFault(400, f"q is longer than {MAX_QUERY_CHARS} characters.")
    raw = request.query.get("limit", str(DEFAULT_ROWS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ROWS:
        raise GatewayFault(400, f"limit must be a whole number from 1 to {MAX_ROWS}.")
    return query, int(raw)


Loader = Callable[[web.Request], Awaitable[Context]]


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    title: str
    load: Loader
    # The live regions, each a template in partials/ the page includes.
    regions: tuple[str, ...]

    @property
    def path(self) -> str:
        return "/" if self.name == "overview" else f"/{self.name}"

    def handler(self, refresh_seconds: float) -> Handler:
        """The page, or with ``?partial=<region>`` just that region of it."""

        async def handle(request: web.Request) -> web.StreamResponse:
            partial = request.query.get("partial")
            if partial is not None and partial not in self.regions:
                raise GatewayFault(
                    400, f"partial must be one of: {', '.join(self.regions)}.", details=partial[:64]
                )
            context = await self.load(request)
            if partial is not None:
                return aiohttp_jinja2.render_template(f"partials/{partial}.html", request, context)
            context.update(page=self, refresh_seconds=refresh_seconds)
            return aiohttp_jinja2.render_template(f"{self.name}.html", request, context)

        return handle


def api(load: Loader) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(await load(request))

    return handler


def clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def ago(epoch: float) -> str:
    seconds = max(0, int(time.time() - epoch))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def size(count: int) -> str:
    """A number of bytes as people read it (1.5 GiB)."""
    return ByteSize(count).human_readable(separator=" ")


def status_class(status: int) -> str:
    return "limited" if status in (413, 429) else f"s{status // 100}xx"


FILTERS: Mapping[str, Callable[..., str]] = {
    "clock": clock,
    "ago": ago,
    "status_class": status_class,
    "size": size,
}
