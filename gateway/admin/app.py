"""Builds the admin app: probes, metrics, the dashboard and its JSON API."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.admin.auth import AdminTokenMiddleware
from gateway.admin.dashboard import FILTERS, Dashboard, Page, api
from gateway.admin.health import healthz, metrics_handler, readyz_handler
from gateway.admin.host import AdminHostMiddleware
from gateway.app import GATEWAY
from gateway.config import AdminConfig
from gateway.middleware.base import Middleware
from gateway.middleware.fault_envelope import FaultEnvelopeMiddleware
from gateway.middleware.request_id import RequestIdMiddleware
from gateway.observability.decisions import DecisionLog
from gateway.observability.feed import LocalFeed
from gateway.observability.metrics import MetricsSource, local_source
from gateway.observability.readiness import Readiness

# The package whose templates/ and static/ the dashboard serves.
PACKAGE = "gateway.admin"


@dataclass(frozen=True, slots=True)
class AdminSources:
    """What the admin listener reports on, wherever it comes from."""

    readiness: Readiness
    # What /metrics serves: this process's counters, or every worker's summed.
    metrics: MetricsSource
    decisions: DecisionLog


def local_sources(gateway_app: web.Application) -> AdminSources:
    """The sources of a gateway app in this same process (one worker)."""
    gateway = gateway_app[GATEWAY]
    if not isinstance(gateway.feed, LocalFeed):
        raise ValueError("this gateway sends its decisions to another process's admin listener")
    return AdminSources(
        readiness=gateway.readiness,
        metrics=local_source(gateway.metrics),
        decisions=gateway.feed.decisions,
    )


def build_admin_app(config: AdminConfig, sources: AdminSources) -> web.Application:
    middlewares: list[Middleware] = [
        RequestIdMiddleware(),
        FaultEnvelopeMiddleware(),
        AdminHostMiddleware(config.host_names),
    ]
    if config.token is not None:
        middlewares.append(AdminTokenMiddleware(config.token.get_secret_value()))
    app = web.Application(middlewares=middlewares)
    dashboard = Dashboard(sources.decisions, sources.readiness, sources.metrics)
    pages = (
        Page("overview", "Overview", dashboard.overview, ("overview",)),
        Page("limits", "Rate limits", dashboard.limits, ("limits",)),
        Page("decisions", "Decisions", dashboard.decisions_page, ("decisions",)),
        Page("audit", "Delete audit", dashboard.audit, ("audit",)),
    )
    templates = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(PACKAGE, "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        filters=FILTERS,
        undefined=jinja2.StrictUndefined,
    )
    templates.globals["pages"] = pages
    router = app.router
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz_handler(sources.readiness))
    router.add_get("/metrics", metrics_handler(sources.metrics))
    for page in pages:
        router.add_get(page.path, page.handler(config.refresh_seconds), name=page.name)
        router.add_get(f"/api/{page.name}", api(page.load))
    router.add_static("/static", str(resources.files(PACKAGE).joinpath("static")), name="static")
    return app
