"""The route table: which operations the gateway serves and where they go.

A route's ``name`` is what policy and rate-limit configuration refer to,
so the two never depend on URL spelling.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Glance ids are UUIDs in canonical form; other spellings uuid.UUID accepts
# (braces, urn:, no hyphens) would name the same image twice in our caches.
# Use fullmatch: "$" would also match before a final newline ("<uuid>%0a").
UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    method: str
    # Every client-facing path; the first is canonical. The seed API spells
    # the path without the version, Glance with it. Parameters match any
    # segment so that a malformed id is our 400, not the router's 404.
    paths: tuple[str, ...]
    # Where the proxy forwards it; None for a route the gateway answers itself.
    upstream_path: str | None
    uuid_params: tuple[str, ...] = ()
    accepts_body: bool = False
    rate_limited: bool = True
    # Every authenticated caller may use it, whatever its roles: it only
    # reads the caller's own state.
    any_caller: bool = False


ROUTES: tuple[Route, ...] = (
    Route(
        name="image:delete",
        method="DELETE",
        paths=("/v2/images/{image_id:[^/]+}", "/images/{image_id:[^/]+}"),
        upstream_path="/v2/images/{image_id}",
        uuid_params=("image_id",),
    ),
    # The caller's own rate limits; not counted against them, so that a
    # client can always learn when to come back.
    Route(
        name="limits:read",
        method="GET",
        paths=("/limits", "/v2/limits"),
        upstream_path=None,
        rate_limited=False,
        any_caller=True,
    ),
)

ROUTE_NAMES = frozenset(route.name for route in ROUTES)


class RouteTable:
    """Registers the routes on a router and finds the route of a request."""

    def __init__(self, routes: tuple[Route, ...] = ROUTES) -> None:
        self.routes = routes
        self._by_resource: dict[str, Route] = {}

    def register(
        self, router: web.UrlDispatcher, proxy: Handler, local: Mapping[str, Handler]
    ) -> None:
        """Proxied routes go to ``proxy``; the others to ``local[route.name]``."""
        for route in self.routes:
            handler = proxy if route.upstream_path is not None else local[route.name]
            for path in route.paths:
                resource = router.add_resource(path)
                resource.add_route(route.method, handler)
                self._by_resource[resource.canonical] = route

    def route_of(self, request: web.Request) -> Route | None:
        info = request.match_info
        if info.http_exception is not None:
            return None
        return self._by_resource.get(info.route.resource.canonical) if info.route.resource else None
