"""Role policy: which roles may perform which route, from configuration.

The default is Rackspace Cloud Images': ``cloudImages:admin`` may delete,
``creator`` and ``observer`` may not, and a global ``admin`` acts on any
tenant's image. A route with no rule is refused to everyone but admins.
"""

from __future__ import annotations

from gateway.config import AuthorizationConfig
from gateway.identity import Identity


class RolePolicy:
    def __init__(self, config: AuthorizationConfig) -> None:
        self.admin_roles = frozenset(r.lower() for r in config.admin_roles)
        self.route_roles = {
            name: frozenset(r.lower() for r in rule.roles) for name, rule in config.routes.items()
        }

    def is_admin(self, identity: Identity) -> bool:
        return identity.has_any_role(self.admin_roles)

    def allows(self, route: str, identity: Identity) -> bool:
        if self.is_admin(identity):
            return True
        roles = self.route_roles.get(route)
        return roles is not None and identity.has_any_role(roles)
