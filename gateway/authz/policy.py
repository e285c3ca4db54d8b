"""Policy decisions: may this caller perform this route on this image?

A route's rule (``authorization`` in the configuration, written in the
policy language of gateway/authz/policy_language.py) is first evaluated on the
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
from gateway.authz.policy_language import Expr, Subject, compile_rules
from gateway.config import AuthorizationConfig


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


class Policy:
    def __init__(self, config: AuthorizationConfig) -> None:
        self.texts = config.rule_texts()
        self.rules: dict[str, Expr] = compile_rules(self.texts)
        self.shadowed = frozenset(name for name, rule in config.rules.items() if rule.shadow)
        self.owner_check = config.owner_check
        # Refusals a shadowed rule would have made, by rule; metrics read them.
        self.shadow_refusals: Counter[str] = Counter()

    async def decide(
        self,
        route: str,
        identity: Identity,
        image_id: str | None,
        owners: ImageOwners | None,
        request_id: str,
    ) -> PolicyDecision:
        """The route's rule for this caller; ``owners`` None skips the owner look-up."""
        expr = self.rules[route]

        def decision(status: int | None, reason: str, message: str = "") -> PolicyDecision:
            if status == 403 and not message:
                message = "Policy does not allow this operation."
            shadow = route in self.shadowed
            if shadow and status is not None and status != 200:
                self.shadow_refusals[route] += 1
            return PolicyDecision(route, self.texts[route], status, reason, shadow, message)

        not_found = f"No image found with ID {image_id}."

        roles = ", ".join(sorted(identity.roles)) or "none"
        subject = Subject(identity.roles, identity.project_id)
        verdict = expr.evaluate(subject)
        if verdict is not None or image_id is None:
            if verdict:
                return decision(200, f"the caller's roles ({roles}) satisfy it")
            return decision(403, f"the caller's roles ({roles}) do not satisfy it")
        if self.owner_check == "backend":
            # The most the caller could be allowed: on its own project's image.
            own = Subject(identity.roles, identity.project_id, True, identity.project_id)
            if expr.evaluate(own):
                mine = f"project {identity.project_id}'s images"
                return decision(200, f"roles ({roles}) allow it on {mine}; the backend checks")
            return decision(403, f"the caller's roles ({roles}) do not satisfy it")
        if owners is None:
            return decision(None, "it depends on the image's owner, and the look-up was skipped")
        record = await owners.record(image_id, request_id)
        if record is None:
            return decision(404, "the backend has no such image", not_found)
        owned = Subject(identity.roles, identity.project_id, owner_known=True, owner=record.owner)
        if expr.evaluate(owned):
            return decision(200, f"project {identity.project_id} owns the image, roles ({roles})")
        if record.owner == identity.project_id:
            return decision(403, f"the caller's roles ({roles}) do not satisfy it")
        visible = record.visibility in VISIBLE_TO_ALL or (
            record.visibility == "shared"
            and await owners.is_member(image_id, identity.project_id, request_id)
        )
        where = f"the image belongs to project {record.owner}, visibility {record.visibility}"
        if visible:
            return decision(
                403,
                f"{where}, which the caller may see but not change",
                f"Image {image_id} belongs to another project.",
            )
        return decision(404, f"{where}, which the caller may not see", not_found)
