"""The route table: which operations the gateway serves and where they go.

A route's ``name`` is what policy and rate-limit configuration refer to,
so the two never depend on URL spelling.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from gateway.http.path_grammar import (
    ParamGrammar,
    identifier_param,
    project_id_param,
    text_param,
    uuid_param,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Body(enum.Enum):
    """What a route takes as a request body; anything else is refused unforwarded."""

    NONE = "none"
    # A JSON object, read (bounded) and checked before it is forwarded.
    JSON = "application/json"
    # Glance's PATCH: a JSON-patch list of operations (RFC 6902, Glance's media type).
    JSON_PATCH = "application/openstack-images-v2.1-json-patch"
    # Image data: streamed, never read whole.
    BINARY = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Route:
    # What policy, rate-limit and audit configuration refer to: Glance's own
    # policy rule name where Glance has one (get_images, delete_image, ...).
    name: str
    method: str
    # Every client-facing path; the first is canonical. The seed API spells
    # the path without the version, Glance with it. Parameters match any
    # segment so that a malformed value is our 400, not the router's 404.
    paths: tuple[str, ...]
    # Where the proxy forwards it; None for a route the gateway answers itself.
    # The only path the gateway sends: this template, filled with checked values.
    upstream_path: str | None
    # What each parameter of the paths may hold, one grammar per parameter.
    params: tuple[ParamGrammar, ...] = ()
    body: Body = Body.NONE
    rate_limited: bool = True
    # Every authenticated caller may use it, whatever its roles: it only
    # reads the caller's own state.
    any_caller: bool = False
    # Version discovery: the links in the answer are rewritten to the
    # gateway's public URL.
    discovery: bool = False
    # False where Glance asks no token either: its version list.
    authenticated: bool = True
    # A call that changes one image: the caller's project must own it (or
    # hold an admin role), checked as for DELETE. Reads are left to the
    # backend, which filters by the identity headers.
    owner_checked: bool = False
    # ``params`` by name, for the routing step's one look-up per value.
    grammar: Mapping[str, ParamGrammar] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        grammar = {param.name: param for param in self.params}
        templates = (*self.paths, *((self.upstream_path,) if self.upstream_path else ()))
        for template in templates:
            named = _PLACEHOLDER.findall(template)
            if sorted(named) != sorted(grammar):
                # A parameter without a grammar would go upstream unchecked.
                raise ValueError(
                    f"route {self.name}: {template} names {named}, grammars are for "
                    f"{sorted(grammar)}"
                )
        object.__setattr__(self, "grammar", grammar)

    @property
    def accepts_body(self) -> bool:
        return self.body is not Body.NONE

    @property
    def audited(self) -> bool:
        """Every operation on the image API leaves an audit record."""
        return self.upstream_path is not None and not self.discovery


# A template's parameter, "{name}" or, in an aiohttp path, "{name:regex}".
_PLACEHOLDER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
# What each path parameter of the image API may hold, by the name Glance's
# router gives it: a name means the same thing on every route. Bounds are
# Glance's own: its image tag schema and column (255), the image member
# column (255), the metadata definition names' columns (80).
PARAMS: Mapping[str, ParamGrammar] = {
    param.name: param
    for param in (
        uuid_param("image_id"),
        uuid_param("task_id"),
        project_id_param("member_id"),
        text_param("tag_value", "an image tag", 255),
        identifier_param("store_id", "a store id", 255),
        text_param("namespace", "a metadata definition namespace", 80),
        text_param("resource_type", "a resource type name", 80),
        text_param("property_name", "a property name", 80),
        text_param("object_name", "an object name", 80),
        text_param("tag_name", "a metadata definition tag", 80),
    )
}


def glance(
    name: str, method: str, path: str, *, body: Body = Body.NONE, owner: bool = False
) -> Route:
    """A Glance v2 route, served at the path Glance serves it (``path`` after /v2)."""
    upstream = "/v2" + path
    return Route(
        name=name,
        method=method,
        paths=(_PLACEHOLDER.sub(r"{\1:[^/]+}", upstream),),
        upstream_path=upstream,
        params=tuple(PARAMS[param] for param in _PLACEHOLDER.findall(path)),
        body=body,
        owner_checked=owner,
    )


def _discovery(name: str, path: str, *, authenticated: bool) -> Route:
    return Route(
        name=name,
        method="GET",
        paths=(path,),
        upstream_path=path,
        rate_limited=authenticated,
        # Any caller may learn the API's versions, whatever its roles.
        any_caller=True,
        discovery=True,
        authenticated=authenticated,
    )


_JSON, _PATCH, _BINARY = Body.JSON, Body.JSON_PATCH, Body.BINARY
_IMAGE = "/images/{image_id}"
_NAMESPACE = "/metadefs/namespaces/{namespace}"
_METADEF_SCHEMAS = tuple(
    f"metadefs/{kind}{plural}"
    for kind in ("namespace", "resource_type", "property", "object", "tag")
    for plural in ("", "s")
)
_SCHEMAS = ("image", "images", "member", "members", "task", "tasks", *_METADEF_SCHEMAS)

# Glance's v2 router (glance/api/v2/router.py), route by route. Names are the
# policy rules Glance checks for them; where Glance checks none, or several
# routes share one, the name says what the route does.
GLANCE_ROUTES: tuple[Route, ...] = (
    glance("get_images", "GET", "/images"),
    glance("add_image", "POST", "/images", body=_JSON),
    glance("get_image", "GET", _IMAGE),
    glance("modify_image", "PATCH", _IMAGE, body=_PATCH, owner=True),
    Route(
        name="delete_image",
        method="DELETE",
        paths=("/v2/images/{image_id:[^/]+}", "/images/{image_id:[^/]+}"),
        upstream_path="/v2/images/{image_id}",
        params=(PARAMS["image_id"],),
        owner_checked=True,
    ),
    glance("upload_image", "PUT", f"{_IMAGE}/file", body=_BINARY, owner=True),
    glance("download_image", "GET", f"{_IMAGE}/file"),
    glance("stage", "PUT", f"{_IMAGE}/stage", body=_BINARY, owner=True),
    glance("import", "POST", f"{_IMAGE}/import", body=_JSON, owner=True),
    glance("deactivate", "POST", f"{_IMAGE}/actions/deactivate", owner=True),
    glance("reactivate", "POST", f"{_IMAGE}/actions/reactivate", owner=True),
    glance("add_tag", "PUT", f"{_IMAGE}/tags/{{tag_value}}", owner=True),
    glance("delete_tag", "DELETE", f"{_IMAGE}/tags/{{tag_value}}", owner=True),
    glance("get_members", "GET", f"{_IMAGE}/members"),
    glance("add_member", "POST", f"{_IMAGE}/members", body=_JSON, owner=True),
    glance("get_member", "GET", f"{_IMAGE}/members/{{member_id}}"),
    # The member (not the owner) accepts or rejects a share: the backend decides.
    glance("modify_member", "PUT", f"{_IMAGE}/members/{{member_id}}", body=_JSON),
    glance("delete_member", "DELETE", f"{_IMAGE}/members/{{member_id}}", owner=True),
    glance("get_image_tasks", "GET", f"{_IMAGE}/tasks"),
    glance("get_image_location", "GET", f"{_IMAGE}/locations"),
    glance("add_image_location", "POST", f"{_IMAGE}/locations", body=_JSON, owner=True),
    glance("delete_from_store", "DELETE", "/stores/{store_id}/{image_id}", owner=True),
    glance("info_import", "GET", "/info/import"),
    glance("info_stores", "GET", "/info/stores"),
    glance("stores_info_detail", "GET", "/info/stores/detail"),
    glance("info_usage", "GET", "/info/usage"),
    *(glance("get_schema", "GET", f"/schemas/{schema}") for schema in _SCHEMAS),
    glance("get_tasks", "GET", "/tasks"),
    glance("add_task", "POST", "/tasks", body=_JSON),
    glance("get_task", "GET", "/tasks/{task_id}"),
    glance("modify_task", "DELETE", "/tasks/{task_id}"),
    glance("cache_list", "GET", "/cache"),
    glance("cache_clear", "DELETE", "/cache"),
    glance("cache_image", "PUT", "/cache/{image_id}"),
    glance("cache_delete", "DELETE", "/cache/{image_id}"),
    glance("list_metadef_resource_types", "GET", "/metadefs/resource_types"),
    glance("get_metadef_resource_type", "GET", f"{_NAMESPACE}/resource_types"),
    glance(
        "add_metadef_resource_type_association", "POST", f"{_NAMESPACE}/resource_types", body=_JSON
    ),
    glance(
        "remove_metadef_resource_type_association",
        "DELETE",
        f"{_NAMESPACE}/resource_types/{{resource_type}}",
    ),
    glance("get_metadef_namespaces", "GET", "/metadefs/namespaces"),
    glance("add_metadef_namespace", "POST", "/metadefs/namespaces", body=_JSON),
    glance("get_metadef_namespace", "GET", _NAMESPACE),
    glance("modify_metadef_namespace", "PUT", _NAMESPACE, body=_JSON),
    glance("delete_metadef_namespace", "DELETE", _NAMESPACE),
    glance("get_metadef_properties", "GET", f"{_NAMESPACE}/properties"),
    glance("add_metadef_property", "POST", f"{_NAMESPACE}/properties", body=_JSON),
    glance("delete_metadef_properties", "DELETE", f"{_NAMESPACE}/properties"),
    glance("get_metadef_property", "GET", f"{_NAMESPACE}/properties/{{property_name}}"),
    glance(
        "modify_metadef_property", "PUT", f"{_NAMESPACE}/properties/{{property_name}}", body=_JSON
    ),
    glance("remove_metadef_property", "DELETE", f"{_NAMESPACE}/properties/{{property_name}}"),
    glance("get_metadef_objects", "GET", f"{_NAMESPACE}/objects"),
    glance("add_metadef_object", "POST", f"{_NAMESPACE}/objects", body=_JSON),
    glance("delete_metadef_objects", "DELETE", f"{_NAMESPACE}/objects"),
    glance("get_metadef_object", "GET", f"{_NAMESPACE}/objects/{{object_name}}"),
    glance("modify_metadef_object", "PUT", f"{_NAMESPACE}/objects/{{object_name}}", body=_JSON),
    glance("delete_metadef_object", "DELETE", f"{_NAMESPACE}/objects/{{object_name}}"),
    glance("get_metadef_tags", "GET", f"{_NAMESPACE}/tags"),
    glance("add_metadef_tags", "POST", f"{_NAMESPACE}/tags", body=_JSON),
    glance("delete_metadef_tags", "DELETE", f"{_NAMESPACE}/tags"),
    glance("get_metadef_tag", "GET", f"{_NAMESPACE}/tags/{{tag_name}}"),
    glance("add_metadef_tag", "POST", f"{_NAMESPACE}/tags/{{tag_name}}"),
    glance("modify_metadef_tag", "PUT", f"{_NAMESPACE}/tags/{{tag_name}}", body=_JSON),
    glance("delete_metadef_tag", "DELETE", f"{_NAMESPACE}/tags/{{tag_name}}"),
)

ROUTES: tuple[Route, ...] = (
    # Version discovery, as Glance serves it: keystoneauth starts here. The
    # version list needs no token; /v2 (a redirect to /v2/) does, in Glance too.
    *(_discovery("versions", path, authenticated=False) for path in ("/", "/versions")),
    *(_discovery("version", path, authenticated=True) for path in ("/v2", "/v2/")),
    *GLANCE_ROUTES,
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


def check_route_names(names: Iterable[str]) -> None:
    """Configuration names routes; a misspelt one is an error, never ignored."""
    unknown = sorted(set(names) - ROUTE_NAMES)
    if unknown:
        raise ValueError(f"unknown route {unknown[0]!r}; known: {', '.join(sorted(ROUTE_NAMES))}")


OWNER_CHECKED_ROUTES = frozenset(route.name for route in ROUTES if route.owner_checked)

# Served unless the operator disables them (config ``routes``): the image
# API a Glance client needs. The image cache, locations and metadata
# definitions are admin tools an operator enables on purpose.
_OFF_BY_DEFAULT_PREFIXES = ("/v2/cache", "/v2/metadefs", "/v2/images/{image_id:[^/]+}/locations")
DEFAULT_ENABLED_ROUTES = frozenset(
    route.name for route in ROUTES if not route.paths[0].startswith(_OFF_BY_DEFAULT_PREFIXES)
)


class RouteTable:
    """Registers the routes on a router and finds the route of a request."""

    def __init__(
        self, routes: tuple[Route, ...] = ROUTES, enabled: frozenset[str] | None = None
    ) -> None:
        # A route the operator has not enabled is not registered at all: its
        # path is unknown (404) or its method not allowed (405), and nothing
        # about it is ever forwarded.
        if enabled is not None:
            routes = tuple(r for r in routes if r.name in enabled)
        self.routes = routes
        # Each registered aiohttp route (path and method) to the route it is:
        # one look-up per request, by what aiohttp's router matched.
        self._by_route: dict[web.AbstractRoute, Route] = {}

    def register(
        self, router: web.UrlDispatcher, proxy: Handler, local: Mapping[str, Handler]
    ) -> None:
        """Proxied routes go to ``proxy``; the others to ``local[route.name]``."""
        for route in self.routes:
            handler = proxy if route.upstream_path is not None else local[route.name]
            for path in route.paths:
                resource = router.add_resource(path)
                self._by_route[resource.add_route(route.method, handler)] = route

    def route_of(self, request: web.Request) -> Route | None:
        # A request the router did not match (404, 405) has a system route,
        # which is none of ours.
        return self._by_route.get(request.match_info.route)


# The routes whose bodies are image data, which byte rate limits count:
# uploads' request bodies, downloads' response bodies.
IMAGE_UPLOAD_ROUTES = frozenset(route.name for route in ROUTES if route.body is Body.BINARY)
IMAGE_DOWNLOAD_ROUTES = frozenset({"download_image"})
IMAGE_DATA_ROUTES = IMAGE_UPLOAD_ROUTES | IMAGE_DOWNLOAD_ROUTES
