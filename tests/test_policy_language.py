"""The rule language (gateway/policy_language.py): parsing, the three-valued
evaluation, and the owner check, which compares project ids exactly."""

from __future__ import annotations

import pytest

from gateway.policy_language import PolicyError, Subject, compile_rules

RACKSPACE = {
    "delete_image": "role:admin or (role:cloudImages:admin and project_id:%(owner)s)",
}
GLANCE = {
    "context_is_admin": "role:admin",
    "delete_image": "rule:context_is_admin or (role:member and project_id:%(owner)s)",
}


def subject(*roles: str, owner: str | None = None) -> Subject:
    known = owner is not None
    return Subject(frozenset(roles), "p1", owner_known=known, owner=owner)


@pytest.mark.parametrize(
    ("rules", "who", "before_owner", "own", "other"),
    [
        (RACKSPACE, ("cloudimages:admin",), None, True, False),
        (RACKSPACE, ("cloudimages:creator",), False, False, False),
        (RACKSPACE, ("cloudimages:observer",), False, False, False),
        (RACKSPACE, ("admin",), True, True, True),
        (GLANCE, ("member", "reader"), None, True, False),
        (GLANCE, ("reader",), False, False, False),
        (GLANCE, ("admin",), True, True, True),
    ],
)
def test_both_reference_policies(
    rules: dict[str, str],
    who: tuple[str, ...],
    before_owner: bool | None,
    own: bool,
    other: bool,
) -> None:
    rule = compile_rules(rules)["delete_image"]
    assert rule.evaluate(subject(*who)) is before_owner, "decided on roles alone, or unknown"
    assert rule.evaluate(subject(*who, owner="p1")) is own
    assert rule.evaluate(subject(*who, owner="p2")) is other


def test_not_and_constants() -> None:
    rules = compile_rules({"r": "not role:banned and (@ or !)", "never": "!"})
    assert rules["r"].evaluate(subject("member")) is True
    assert rules["r"].evaluate(subject("banned")) is False
    assert rules["never"].evaluate(subject("admin")) is False


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"delete_image": "role:admin or"}, "rule 'delete_image': the rule ends too early"),
        ({"delete_image": "role:admin and and role:x"}, "rule 'delete_image': unknown check 'and'"),
        ({"delete_image": "(role:admin"}, "rule 'delete_image'"),
        ({"delete_image": "role:admin)"}, "unexpected ')'"),
        ({"delete_image": "rule:missing"}, "refers to rule:missing, which is not defined"),
        ({"delete_image": "rule:a", "a": "rule:delete_image"}, "cycle"),
        ({"delete_image": "__import__('os')"}, "unknown check"),
        ({"delete_image": "project_id:%(owner)s.__class__"}, "unknown check"),
        ({"delete_image": ""}, "the rule is empty"),
    ],
)
def test_malformed_rules_name_the_rule(rules: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        compile_rules(rules)
    assert message in str(caught.value)
    assert caught.value.rule is not None


OWNS = "project_id:%(owner)s"


@pytest.mark.parametrize(
    ("caller", "owner"),
    [
        ("Project-A", "project-a"),
        ("project-a", "Project-A"),
        ("PROJECT-A", "project-a"),
        # Keystone's ids are hex: one upper-case digit is another project.
        ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "0F1E2D3C4B5A69788796A5B4C3D2E1F0"),
    ],
)
def test_the_owner_is_compared_exactly_never_by_case(caller: str, owner: str) -> None:
    rule = compile_rules({"r": OWNS})["r"]
    look_alike = Subject(frozenset(), caller, owner_known=True, owner=owner)
    assert rule.evaluate(look_alike) is False
    same = Subject(frozenset(), owner, owner_known=True, owner=owner)
    assert rule.evaluate(same) is True


def test_an_image_without_an_owner_is_owned_by_no_project() -> None:
    rules = compile_rules({"owns": OWNS, "not_owns": f"not {OWNS}"})
    no_owner = Subject(frozenset(), "p1", owner_known=True, owner=None)
    assert rules["owns"].evaluate(no_owner) is False
    assert rules["not_owns"].evaluate(no_owner) is True
    # Unknown until the owner is known: the rule waits for the look-up.
    assert rules["owns"].evaluate(Subject(frozenset(), "p1")) is None


def test_roles_are_matched_without_case_ids_are_not() -> None:
    rule = compile_rules({"r": f"role:Member and {OWNS}"})["r"]
    # Roles arrive lower-cased from every token kind; the rule's are folded too.
    mine = Subject(frozenset({"member"}), "p1", owner_known=True, owner="p1")
    assert rule.evaluate(mine) is True
    assert (
        rule.evaluate(Subject(frozenset({"member"}), "P1", owner_known=True, owner="p1")) is False
    )
