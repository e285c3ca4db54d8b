"""Policy decisions: may this caller perform this route on this image?

A route's rule (``authorization`` in the configuration, written in the
policy language of gateway/policy_language.py) is first evaluated on the
caller's roles alone; only when the answer depends on the image's owner is
the owner looked up. A denial after the look-up keeps Glance's visibility
rule: an image the caller could not even see is 404, so the gateway never
confirms another tenant's private image exists; one it can see is 403.
With ``owner_check: backend`` there is no look-up: a caller whose roles would
be allowed on its own project's image is let through, and the backend, which
enforces ownership from the identity headers, answers that 404 or 403.

The default policy is Rackspace Cloud Images': ``cloudImages:admin`` may
delete its own project's images, ``creator`` and ``observer`` may not, and a
global ``admin`` acts on any tenant's image.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gateway.authn.identity import Identity
from gateway.authz.ownership import VISIBLE_TO_ALL, ImageOwners
from gateway.config import AuthorizationConfig
from gateway.policy_language import Expr, Subject, compile_rules


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    rule: str
    check: str
    # 200 allowed, 403 or 404 refused, None when it could not be decided
    # (the owner was needed and its look-up skipped).
    status: int | None
    reason: str
    shadow: bool
    # What the client is told on a refusal; the reason is for logs and explain.
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


# Decisions on roles alone kept per (route, roles, project, has image): a
# handful per tenant. Past this many the table starts again, so a large
# cloud's tenants take turns rather than the first ones keeping it.
_ROLE_DECISIONS_KEPT = 4096
# The table's entry for a rule that needs the image's owner.
_NEEDS_OWNER = None


class Policy:
    def __init__(self, config: AuthorizationConfig) -> None:
        self.texts = config.rule_texts()
        self.rules: dict[str, Expr] = compile_rules(self.texts)
        self.shadowed = frozenset(name for name, rule in config.rules.items() if rule.shadow)
        self.owner_check = config.owner_check
        # Refusals a shadowed rule would have made, by rule; metrics read them.
        self.shadow_refusals: Counter[str] = Counter()
        self._by_roles: dict[tuple[str, frozenset[str], str, bool], PolicyDecision | None] = {}

    async def decide(
        self,
        route: str,
        identity: Identity,
        image_id: str | None,
        owners: ImageOwners | None,
        request_id: str,
    ) -> PolicyDecision:
        """The route's rule for this caller; ``owners`` None skips the owner look-up."""
        decided = self.on_roles(route, identity, image_id is None)
        if decided is None:
            assert image_id is not None
            decided = await self.on_owner(route, identity, image_id, owners, request_id)
        return decided

    def on_roles(self, route: str, identity: Identity, no_image: bool) -> PolicyDecision | None:
        """The decision the caller's roles settle, None when it needs the
        image's owner (``on_owner``). No coroutine: on most requests the
        roles settle it, from a table, and nothing is awaited."""
        key = (route, identity.roles, identity.project_id, no_image)
        try:
            decided = self._by_roles[key]
        except KeyError:
            # The same answer for every request with this key: worked out once.
            decided = self._on_roles(route, identity, no_image)
            if len(self._by_roles) >= _ROLE_DECISIONS_KEPT:
                self._by_roles.clear()
            self._by_roles[key] = decided
        if decided is not _NEEDS_OWNER:
            self._count(decided)
        return decided

    def _counted(
        self, route: str, status: int | None, reason: str, message: str = ""
    ) -> PolicyDecision:
        """A decision made for one request, counted as it is made."""
        decided = self._decision(route, status, reason, message)
        self._count(decided)
        return decided

    def _count(self, decided: PolicyDecision) -> None:
        if decided.shadow and decided.status not in (None, 200):
            self.shadow_refusals[decided.rule] += 1

    def _decision(
        self, route: str, status: int | None, reason: str, message: str = ""
    ) -> PolicyDecision:
        if status == 403 and not message:
            message = "Policy does not allow this operation."
        return PolicyDecision(
            route, self.texts[route], status, reason, route in self.shadowed, message
        )

    def _on_roles(self, route: str, identity: Identity, no_image: bool) -> PolicyDecision | None:
        """The decision the caller's roles settle, or _NEEDS_OWNER."""
        expr = self.rules[route]
        roles = _roles_text(identity)
        verdict = expr.evaluate(Subject(identity.roles, identity.project_id))
        if verdict is not None or no_image:
            if verdict:
                return self._decision(route, 200, f"the caller's roles ({roles}) satisfy it")
            return self._decision(route, 403, f"the caller's roles ({roles}) do not satisfy it")
        if self.owner_check == "backend":
            # The most the caller could be allowed: on its own project's image.
            own = Subject(identity.roles, identity.project_id, True, identity.project_id)
            if expr.evaluate(own):
                mine = f"project {identity.project_id}'s images"
                return self._decision(
                    route, 200, f"roles ({roles}) allow it on {mine}; the backend checks"
                )
            return self._decision(route, 403, f"the caller's roles ({roles}) do not satisfy it")
        return _NEEDS_OWNER

    async def on_owner(
        self,
        route: str,
        identity: Identity,
        image_id: str,
        owners: ImageOwners | None,
        request_id: str,
    ) -> PolicyDecision:
        """The decision once the image's owner is known (looked up, cached)."""
        decision = self._counted
        if owners is None:
            return decision(
                route, None, "it depends on the image's owner, and the look-up was skipped"
            )
        not_found = f"No image found with ID {image_id}."
        record = await owners.record(image_id, request_id)
        if record is None:
            return decision(route, 404, "the backend has no such image", not_found)
        roles = _roles_text(identity)
        owned = Subject(identity.roles, identity.project_id, owner_known=True, owner=record.owner)
        if self.rules[route].evaluate(owned):
            return decision(
                route, 200, f"project {identity.project_id} owns the image, roles ({roles})"
            )
        if record.owner == identity.project_id:
            return decision(route, 403, f"the caller's roles ({roles}) do not satisfy it")
        visible = record.visibility in VISIBLE_TO_ALL or (
            record.visibility == "shared"
            and await owners.is_member(image_id, identity.project_id, request_id)
        )
        where = f"the image belongs to project {record.owner}, visibility {record.visibility}"
        if visible:
            return decision(
                route,
                403,
                f"{where}, which the caller may see but not change",
                f"Image {image_id} belongs to another project.",
            )
        return decision(route, 404, f"{where}, which the caller may not see", not_found)


def _roles_text(identity: Identity) -> str:
    return ", ".join(sorted(identity.roles)) or "none"
