"""The ``authorization`` section's simple form, written out in the policy language.

What a route gets when nobody wrote a rule for it is the policy's most
dangerous default: admins only, never everyone. Each test below holds for
every route the gateway serves, not for the one a shipped file happens to
leave without a rule.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config.authorization import AuthorizationConfig
from gateway.http.routes import OWNER_CHECKED_ROUTES, ROUTE_NAMES
from gateway.policy_language import Subject, compile_rules

MEMBER = frozenset({"member"})


def section(**data: Any) -> AuthorizationConfig:
    """The section as the configuration file would give it."""
    return AuthorizationConfig.model_validate(data)


def decide(config: AuthorizationConfig, route: str, roles: frozenset[str], owner: str) -> object:
    rule = compile_rules(config.rule_texts())[route]
    return rule.evaluate(Subject(roles, "p1", owner_known=True, owner=owner))


def test_every_route_without_a_rule_is_for_admins_only() -> None:
    config = section(admin_roles=["admin", "ops"], routes={})
    texts = config.rule_texts()
    assert set(texts) == ROUTE_NAMES
    for route in ROUTE_NAMES:
        assert texts[route] == "role:admin or role:ops", route
        assert decide(config, route, MEMBER, owner="p1") is False, route
        assert decide(config, route, frozenset(), owner="p1") is False, route
        assert decide(config, route, frozenset({"ops"}), owner="p2") is True, route


def test_the_default_section_lets_only_admins_past_any_route_but_delete() -> None:
    config = section()
    for route in ROUTE_NAMES - {"delete_image"}:
        assert decide(config, route, frozenset({"cloudimages:admin"}), owner="p1") is False
        assert decide(config, route, frozenset({"admin"}), owner="p2") is True
    assert decide(config, "delete_image", frozenset({"cloudimages:admin"}), owner="p1") is True
    assert decide(config, "delete_image", frozenset({"cloudimages:admin"}), owner="p2") is False


def test_no_admin_roles_means_nobody_is_an_admin() -> None:
    config = section(admin_roles=[], routes={"get_image": {"roles": ["member"]}})
    texts = config.rule_texts()
    assert texts["delete_image"] == "!"
    for route in ROUTE_NAMES - {"get_image"}:
        assert decide(config, route, frozenset({"admin"}), owner="p1") is False, route
    assert decide(config, "get_image", MEMBER, owner="p2") is True


@pytest.mark.parametrize("route", sorted(OWNER_CHECKED_ROUTES))
def test_every_call_that_changes_one_image_checks_its_owner(route: str) -> None:
    config = section(routes={route: {"roles": ["member"]}})
    assert decide(config, route, MEMBER, owner="p1") is True
    assert decide(config, route, MEMBER, owner="p2") is False
    assert decide(config, route, MEMBER, owner="P1") is False


def test_reads_are_left_to_the_backend_to_filter() -> None:
    config = section(routes={"get_image": {"roles": ["member"]}})
    assert "get_image" not in OWNER_CHECKED_ROUTES
    assert decide(config, "get_image", MEMBER, owner="p2") is True


def test_a_rule_by_name_replaces_the_simple_form() -> None:
    config = section(
        routes={"get_image": {"roles": ["member"]}}, rules={"get_image": "role:reader"}
    )
    assert config.rule_texts()["get_image"] == "role:reader"
    assert decide(config, "get_image", MEMBER, owner="p1") is False
