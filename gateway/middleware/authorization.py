"""Authorization: the route's policy rule for the caller, and the image's owner.

The decision is gateway/authz/policy.py's; this step turns a refusal (or a
failed owner look-up) into the fault, or, for a rule in shadow mode, into a
log line and a count while the request goes through.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.authz.ownership import ImageOwners
from gateway.authz.policy import Policy
from gateway.http.faults import GatewayFault
from gateway.http.routes import Handler
from gateway.http.upstream import LookupFailed
from gateway.middleware.base import Middleware
from gateway.request_context import context_of

log = logging.getLogger("gateway.authorization")


class AuthorizationMiddleware(Middleware):
    def __init__(self, policy: Policy, owners: ImageOwners | None) -> None:
        # ``owners`` is None only in a dry run that skips the owner look-up:
        # a rule that needs the owner is then undecided, and refuses.
        self.policy = policy
        self.owners = owners

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        identity, route = ctx.identity, ctx.route
        if route is None or identity is None or route.any_caller:
            # An any_caller route reads only the caller's own state.
            return await handler(request)
        ctx.step = "authorization"
        image_id = ctx.params.get("image_id")
        decision = self.policy.on_roles(route.name, identity, image_id is None)
        if decision is None:
            assert image_id is not None
            try:
                decision = await self.policy.on_owner(
                    route.name, identity, image_id, self.owners, ctx.request_id
                )
            except LookupFailed as failure:
                assert self.owners is not None  # only a look-up fails
                raise self.owners.upstream.lookup_fault(failure) from None
        ctx.policy = decision
        if not decision.allowed:
            extra = {"request_id": ctx.request_id}
            if not decision.shadow:
                log.info(
                    "refused %s by rule %s: %s",
                    decision.status,
                    decision.rule,
                    decision.reason,
                    extra=extra,
                )
                raise GatewayFault(decision.status or 403, decision.message)
            log.warning(
                "shadow rule %s would refuse %s: %s; letting it through",
                decision.rule,
                decision.status,
                decision.reason,
                extra=extra,
            )
        if image_id is None:
            return await handler(request)
        try:
            return await handler(request)
        finally:
            # A deleted or vanished image must not keep its cached owner.
            if ctx.upstream_status in (204, 404) and self.owners is not None:
                self.owners.forget(image_id)
