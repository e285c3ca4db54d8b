"""What a route's request body must be, checked before anything is forwarded.

JSON bodies are small: they are read (bounded, chunked ones too) and parsed
here, so that a malformed or oversized one is our 400 or 413 and never
reaches the backend. Image data is streamed; only its declared size is
checked here.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.http.faults import GatewayFault
from gateway.http.routes import Body, Route

# Glance's PATCH media types (v2.0 is still accepted by Glance).
JSON_PATCH_TYPES = frozenset(
    {Body.JSON_PATCH.value, "application/openstack-images-v2.0-json-patch"}
)
# Glance accepts these operations in a PATCH (v2.1 schema).
PATCH_OPERATIONS = frozenset({"add", "remove", "replace"})


def _media_type_ok(route: Route, content_type: str) -> bool:
    if route.body is Body.JSON_PATCH:
        return content_type in JSON_PATCH_TYPES
    return content_type == str(route.body.value)


def check_media_type(route: Route, request: web.Request) -> None:
    if not request.body_exists:
        return
    if not route.accepts_body:
        raise GatewayFault(400, "This operation does not accept a request body.")
    if not _media_type_ok(route, request.content_type):
        wanted = (
            " or ".join(sorted(JSON_PATCH_TYPES))
            if route.body is Body.JSON_PATCH
            else (route.body.value)
        )
        raise GatewayFault(
            415,
            f"Unsupported media type {request.content_type!r} for this operation.",
            details=f"Send Content-Type: {wanted}.",
        )


def check_declared_size(request: web.Request, limit: int | None) -> None:
    """Image data over the limit is refused before a byte of it is read.

    Data without a declared size (chunked) is counted as the proxy streams
    it, and cut past the same limit (gateway.handlers.proxy)."""
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        raise image_too_large(f"{length} bytes", limit)


def image_too_large(size: str, limit: int, *, close_connection: bool = False) -> GatewayFault:
    return GatewayFault(
        413,
        "Image data is larger than this gateway accepts.",
        details=f"{size}; the limit is {limit}.",
        close_connection=close_connection,
    )


async def read_json_body(route: Route, request: web.Request, limit: int) -> bytes:
    """The whole JSON body, checked to be what the route takes; refused otherwise."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(length, limit)
    body = await request.content.read(limit + 1)
    # A chunked body gives no length up front: keep reading until the limit.
    while len(body) <= limit and not request.content.at_eof():
        more = await request.content.read(limit + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > limit:
        raise _too_large(None, limit)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayFault(400, "The request body is not valid JSON.", details=str(exc)) from None
    problem = (
        _json_patch_problem(document)
        if route.body is Body.JSON_PATCH
        else (None if isinstance(document, dict) else "the body must be a JSON object")
    )
    if problem is not None:
        raise GatewayFault(400, f"Malformed request body: {problem}.")
    return body


def _too_large(length: int | None, limit: int) -> GatewayFault:
    size = f"{length} bytes" if length is not None else "More"
    return GatewayFault(
        413, "The request body is too large.", details=f"{size}; the limit is {limit} bytes."
    )


def _json_patch_problem(document: Any) -> str | None:
    if not isinstance(document, list):
        return "a JSON-patch body is a list of operations"
    for index, operation in enumerate(document):
        if not isinstance(operation, dict):
            return f"operation {index} is not an object"
        op = operation.get("op")
        if op not in PATCH_OPERATIONS:
            return f"operation {index}: op must be one of {', '.join(sorted(PATCH_OPERATIONS))}"
        path = operation.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            return f"operation {index}: path must be a JSON pointer such as /name"
        if op != "remove" and "value" not in operation:
            return f"operation {index}: {op} needs a value"
    return None
