"""8. Authorization: the caller's roles for the route, then the image's owner.

An image the caller could not even see is 404, as Glance answers, so that
the gateway never confirms another tenant's private image exists; one it
can see but not change is 403.
"""

from __future__ import annotations

from aiohttp import web

from gateway.context import context_of
from gateway.faults import GatewayFault
from gateway.middleware.base import Middleware
from gateway.ownership import VISIBLE_TO_ALL, ImageOwners
from gateway.policy import RolePolicy
from gateway.routes import Handler


def _not_found(image_id: str) -> GatewayFault:
    return GatewayFault(404, f"No image found with ID {image_id}.")


class AuthorizationMiddleware(Middleware):
    def __init__(self, policy: RolePolicy, owners: ImageOwners) -> None:
        self.policy = policy
        self.owners = owners

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        identity, route = ctx.identity, ctx.route
        if route is None or identity is None:
            return await handler(request)
        if not route.any_caller and not self.policy.allows(route.name, identity):
            raise GatewayFault(
                403,
                "Policy does not allow this operation.",
                details=f"{route.name} needs one of the roles configured for it.",
            )
        image_id = ctx.params.get("image_id")
        if image_id is None:
            return await handler(request)
        if not self.policy.is_admin(identity):
            await self._check_owner(image_id, identity.project_id, ctx.request_id)
        try:
            return await handler(request)
        finally:
            # A deleted or vanished image must not keep its cached owner.
            if ctx.upstream_status in (204, 404):
                self.owners.forget(image_id)

    async def _check_owner(self, image_id: str, project_id: str, request_id: str) -> None:
        record = await self.owners.record(image_id, request_id)
        if record is None:
            raise _not_found(image_id)
        if record.owner == project_id:
            return
        visible = record.visibility in VISIBLE_TO_ALL or (
            record.visibility == "shared"
            and await self.owners.is_member(image_id, project_id, request_id)
        )
        if not visible:
            raise _not_found(image_id)
        raise GatewayFault(403, f"Image {image_id} belongs to another project.")
