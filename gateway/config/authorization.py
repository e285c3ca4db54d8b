"""The ``authorization`` section: who may use which route, in the policy language."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config._base import _resolve, _Section
from gateway.config._yaml import load_yaml
from gateway.http.routes import OWNER_CHECKED_ROUTES, ROUTE_NAMES, check_route_names
from gateway.policy_language import OWNER_CHECK, compile_rules


class RouteRoles(_Section):
    roles: list[str] = Field(min_length=1)


def _default_route_roles() -> dict[str, RouteRoles]:
    return {"delete_image": RouteRoles(roles=["cloudImages:admin"])}


# Route names before the routes took Glance's policy rule names; a
# configuration that still uses one means the route now named so.
RENAMED_ROUTES = {"image:delete": "delete_image"}


def _renamed(names: Any) -> Any:
    if not isinstance(names, dict):
        return names
    return {RENAMED_ROUTES.get(name, name): value for name, value in names.items()}


class PolicyRule(_Section):
    """A rule in the policy language (gateway/policy_language.py)."""

    check: str
    # Shadow mode: the decision is logged and counted, the request goes through.
    shadow: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"check": value} if isinstance(value, str) else value


# Route names are resource:action; helper rules are named otherwise.
_ROUTE_LIKE = re.compile(r"^[a-z_]+:[a-z_]+$")


def _read_policy_file(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"policy_file {path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ValueError(f"cannot read policy_file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"policy_file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"policy_file {path} must map rule names to rules")
    return data


class AuthorizationConfig(_Section):
    # The simple form: roles that act on any tenant's image (Rackspace's and
    # Glance's "admin"), and per route the roles that may act on their own
    # project's images. A rule of the same name in `rules` replaces it.
    admin_roles: list[str] = ["admin"]
    routes: dict[str, RouteRoles] = Field(default_factory=_default_route_roles)
    # Rules by name, in the policy language; a route's rule is the one named
    # after it. `policy_file` is a YAML file of more rules, read at start-up.
    policy_file: Path | None = None
    rules: dict[str, PolicyRule] = {}
    # Who checks that the caller's project owns the image, where a rule asks:
    # "gateway" looks the owner up in the backend (cached) before forwarding;
    # "backend" forwards at once and leaves it to a backend that enforces
    # ownership from the identity headers, as stock Glance does, passing on
    # its 404 (an image the caller may not see) or 403 (one it may not change).
    owner_check: Literal["gateway", "backend"] = "gateway"

    @model_validator(mode="before")
    @classmethod
    def _merge_policy_file(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = {**data, **{k: _renamed(data[k]) for k in ("routes", "rules") if k in data}}
        if data.get("policy_file") is None:
            return data
        path = _resolve(Path(data["policy_file"]), info)
        from_file = _renamed(_read_policy_file(path))
        inline = data.get("rules") or {}
        both = sorted(set(from_file) & set(inline))
        if both:
            raise ValueError(f"rule {both[0]!r} is in both policy_file and rules")
        return {**data, "policy_file": path, "rules": {**from_file, **inline}}

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, value: dict[str, RouteRoles]) -> dict[str, RouteRoles]:
        check_route_names(value)
        return value

    @model_validator(mode="after")
    def _rules_compile(self) -> Self:
        # A misspelt route rule would leave the route on its default policy.
        for name in self.rules:
            if _ROUTE_LIKE.match(name) and name not in ROUTE_NAMES:
                known = ", ".join(sorted(ROUTE_NAMES))
                raise ValueError(f"rule {name!r} is named like a route, but none is: {known}")
        compile_rules(self.rule_texts())
        return self

    def rule_texts(self) -> dict[str, str]:
        """Every rule by name, the simple form written out in the policy language."""
        admin = " or ".join(f"role:{r}" for r in self.admin_roles) or "!"
        texts = {}
        for route, rule in self.routes.items():
            roles = " or ".join(f"role:{r}" for r in rule.roles)
            # The owner check applies to the calls that change one image; the
            # others are filtered by the backend from the identity headers.
            owned = f" and {OWNER_CHECK}" if route in OWNER_CHECKED_ROUTES else ""
            texts[route] = f"{admin} or (({roles}){owned})"
        # A route without any rule is for admins only.
        texts.update({route: admin for route in ROUTE_NAMES - set(texts)})
        texts.update({name: rule.check for name, rule in self.rules.items()})
        return texts
