"""Stand-in image store: a tiny in-memory, Glance-v2-compatible HTTP server.

This is NOT Glance. It implements only the subset of the Glance v2 image API that the
gateway's demo and tests need (create, show, delete, add/show member) so they can run
against a real upstream HTTP server. Like Glance deployed without keystone's authtoken
middleware, it trusts the X-Identity-Status / X-Project-Id / X-Roles headers verbatim,
so it must only ever be reachable through the gateway.
"""

from __future__ import annotations

import collections
import html
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes


VISIBILITIES = frozenset({"private", "public", "shared", "community"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StoredImage:
    id: str
    name: str
    owner: str
    visibility: str
    protected: bool
    status: str = "active"
    members: set[str] = field(default_factory=set)
    created_at: str = field(default_factory=_now)
    updated_at: str = ""

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "visibility": self.visibility,
            "protected": self.protected,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "self": f"/v2/images/{self.id}",
            "file": f"/v2/images/{self.id}/file",
            "schema": "/v2/schemas/image",
            "tags": [],
            "min_disk": 0,
            "min_ram": 0,
            "disk_format": None,
            "container_format": None,
            "size": None,
            "checksum": None,
        }


RECEIVED: web.AppKey[collections.deque[ReceivedRequest]] = web.AppKey(
    "standin_received", collections.deque
)
IMAGES: web.AppKey[dict[str, StoredImage]] = web.AppKey("standin_images", dict)

# Glance raises webob.exc.HTTPUnauthorized() bare, so clients see webob's stock text.
_UNAUTHORIZED = (
    "This server could not verify that you are authorized to access the document you "
    "requested. Either you supplied the wrong credentials (e.g., bad password), or your "
    "browser does not understand how to supply the credentials required."
)


class _Fault(Exception):
    """A Glance-style refusal; the middleware renders it as webob's HTML error page."""

    def __init__(self, status: int, explanation: str) -> None:
        super().__init__(explanation)
        self.status, self.explanation = status, explanation

    def response(self) -> web.Response:
        title = f"{self.status} {HTTPStatus(self.status).phrase}"
        body = (
            f"<html>\n <head>\n  <title>{title}</title>\n </head>\n <body>\n"
            f"  <h1>{title}</h1>\n  {html.escape(self.explanation)}<br /><br />\n\n\n"
            " </body>\n</html>"
        )
        headers = {"Content-Type": "text/html; charset=UTF-8"}
        return web.Response(status=self.status, body=body.encode(), headers=headers)


@dataclass(frozen=True)
class _Caller:
    project: str
    is_admin: bool


def _caller(request: web.Request) -> _Caller:
    headers = request.headers
    project = headers.get("X-Project-Id") or headers.get("X-Tenant-Id")
    # An unscoped caller could only create ownerless images, which nothing downstream
    # expects, so it is refused like an unconfirmed token.
    if headers.get("X-Identity-Status") != "Confirmed" or not project:
        raise _Fault(401, _UNAUTHORIZED)
    roles = {r.strip().lower() for r in headers.get("X-Roles", "").split(",")}
    return _Caller(project, "admin" in roles)


def _visible(image: StoredImage, caller: _Caller) -> bool:
    return (
        caller.is_admin
        or image.owner == caller.project
        or image.visibility in ("public", "community")
        or (image.visibility == "shared" and caller.project in image.members)
    )


def _visible_image(request: web.Request, caller: _Caller) -> StoredImage:
    image_id = request.match_info["image_id"]
    image = request.app[IMAGES].get(image_id)
    # Malformed ids never match a stored (UUID) id, so they 404 exactly like Glance.
    if image is None or not _visible(image, caller):
        raise _Fault(404, f"No image found with ID {image_id}")
    return image


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        raise _Fault(400, "Body expected in request.")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _Fault(400, "Malformed JSON in request body.")
    return body


def _member_json(image: StoredImage, member: str) -> dict[str, Any]:
    # Per-member times are not tracked; the image's creation time is stable across reads.
    return {
        "image_id": image.id,
        "member_id": member,
        "status": "pending",
        "created_at": image.created_at,
        "updated_at": image.created_at,
        "schema": "/v2/schemas/member",
    }


async def _create_image(request: web.Request) -> web.Response:
    caller = _caller(request)
    body = await _json_object(request)
    bad = "Provided object does not match schema 'image': "
    name = body.get("name", "")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise _Fault(400, bad + "'name' must be a string of at most 255 characters")
    visibility = body.get("visibility", "private")
    if visibility not in VISIBILITIES:
        raise _Fault(400, bad + f"{visibility!r} is not one of {sorted(VISIBILITIES)}")
    protected = body.get("protected", False)
    if not isinstance(protected, bool):
        raise _Fault(400, bad + f"{protected!r} is not of type 'boolean'")
    image_id = body.get("id")
    if image_id is not None and not (isinstance(image_id, str) and _is_uuid(image_id)):
        raise _Fault(400, bad + f"{image_id!r} is not a 'uuid'")
    if image_id is not None and image_id in request.app[IMAGES]:
        raise _Fault(409, f"Image with identifier {image_id} already exists!")
    image = add_image(
        request.app,
        owner=caller.project,
        name=name or "",
        visibility=visibility,
        protected=protected,
        image_id=image_id,
    )
    headers = {"Location": f"/v2/images/{image.id}"}
    return web.json_response(image.to_json(), status=201, headers=headers)


async def _show_image(request: web.Request) -> web.Response:
    return web.json_response(_visible_image(request, _caller(request)).to_json())


async def _delete_image(request: web.Request) -> web.Response:
    caller = _caller(request)
    image = _visible_image(request, caller)
    if not (caller.is_admin or image.owner == caller.project):
        raise _Fault(403, "You are not authorized to complete delete_image action.")
    if image.protected:
        raise _Fault(403, f"Image {image.id} is protected and cannot be deleted.")
    if image.status == "importing":
        raise _Fault(409, f"Image {image.id} could not be deleted because it is being imported.")
    del request.app[IMAGES][image.id]
    return web.Response(status=204)


async def _add_member(request: web.Request) -> web.Response:
    caller = _caller(request)
    image = _visible_image(request, caller)
    if not (caller.is_admin or image.owner == caller.project):
        raise _Fault(403, f"Not allowed to create members for image {image.id}.")
    if image.visibility != "shared":
        raise _Fault(403, "Only shared images have members.")
    member = (await _json_object(request)).get("member")
    if not isinstance(member, str) or not member:
        raise _Fault(400, "Member to be added not specified")
    if member in image.members:
        raise _Fault(409, f"Member {member} is duplicated for image {image.id}")
    image.members.add(member)
    return web.json_response(_member_json(image, member))


async def _show_member(request: web.Request) -> web.Response:
    caller = _caller(request)
    image = _visible_image(request, caller)
    member = request.match_info["member_id"]
    # Glance lets a member see only its own membership; other members stay hidden.
    may_see = caller.is_admin or image.owner == caller.project or member == caller.project
    if member not in image.members or not may_see:
        raise _Fault(404, f"Member {member} not found for image {image.id}")
    return web.json_response(_member_json(image, member))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Recorded before any decision so tests can prove what the gateway forwarded, even
    # for requests this store then refuses.
    request.app[RECEIVED].append(
        ReceivedRequest(
            request.method,
            request.path,
            CIMultiDictProxy(CIMultiDict(request.headers)),
            await request.read(),
        )
    )
    try:
        return await handler(request)
    except _Fault as fault:
        return fault.response()


def create_standin_store_app() -> web.Application:
    app = web.Application(middlewares=[_record])
    app[RECEIVED] = collections.deque(maxlen=1000)
    app[IMAGES] = {}
    image = "/v2/images/{image_id}"
    app.router.add_post("/v2/images", _create_image)
    app.router.add_get(image, _show_image, allow_head=False)
    app.router.add_delete(image, _delete_image)
    app.router.add_post(image + "/members", _add_member)
    app.router.add_get(image + "/members/{member_id}", _show_member, allow_head=False)
    return app


def add_image(
    app: web.Application,
    *,
    owner: str,
    name: str = "image",
    visibility: str = "private",
    protected: bool = False,
    status: str = "active",
    image_id: str | None = None,
    members: Iterable[str] = (),
) -> StoredImage:
    """Seed an image directly, bypassing HTTP and identity checks (for demos and tests)."""
    if visibility not in VISIBILITIES:
        raise ValueError(f"unknown visibility {visibility!r}")
    image_id = image_id or str(uuid.uuid4())
    if not _is_uuid(image_id) or image_id in app[IMAGES]:
        raise ValueError(f"image id {image_id!r} is malformed or already used")
    image = StoredImage(image_id, name, owner, visibility, protected, status, set(members))
    app[IMAGES][image_id] = image
    return image
