"""Policy as a file: the rule language, both reference policies, shadow mode,
and a malformed rule refused by check-config with its name."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import GATEWAY
from gateway.authz.policy_language import PolicyError, Subject, compile_rules
from gateway.cli.main import main
from gateway.demo_backend.image_store import IMAGES, RECEIVED, add_image
from tests.support import REPO
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory

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


# --- check-config ---------------------------------------------------------------------


def write_config(tmp_path: Path, keys: Keys, **authorization: Any) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(config_data("http://127.0.0.1:1", keys, authorization=authorization))
    )
    return path


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            "delete_image: 'role:admin or or'\n",
            "authorization: rule 'delete_image': unknown check 'or'",
        ),
        ("delete_image: 'rule:nope'\n", "authorization: rule 'delete_image': refers to rule:nope"),
        ("- a list\n", "must map rule names to rules"),
        ("delete_image: [unclosed\n", "is not valid YAML"),
        ("delete_image: {check: '@', shadow: maybe}\n", "authorization.rules.delete_image.shadow"),
        ("image:delte: '@'\n", "rule 'image:delte' is named like a route, but none is"),
    ],
)
def test_check_config_reports_a_malformed_policy_file(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str], policy: str, message: str
) -> None:
    (tmp_path / "policy.yaml").write_text(policy)
    path = write_config(tmp_path, keys, policy_file="policy.yaml")
    assert main(["check-config", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_check_config_reports_a_missing_policy_file_and_a_rule_defined_twice(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(write_config(tmp_path, keys, policy_file="nope.yaml"))]) == 2
    assert "cannot read policy_file" in capsys.readouterr().err
    (tmp_path / "policy.yaml").write_text("delete_image: '@'\n")
    both = write_config(tmp_path, keys, policy_file="policy.yaml", rules={"delete_image": "!"})
    assert main(["check-config", str(both)]) == 2
    assert "rule 'delete_image' is in both policy_file and rules" in capsys.readouterr().err


def test_check_config_accepts_the_glance_policy_file(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(GLANCE))
    assert main(["check-config", str(write_config(tmp_path, keys, policy_file="policy.yaml"))]) == 0
    assert "OK" in capsys.readouterr().out


# --- through the gateway --------------------------------------------------------------


RuleGateway = Callable[..., Awaitable[Client]]


@pytest.fixture
def rule_gateway(make_gateway: GatewayFactory, store_server: TestServer) -> RuleGateway:
    async def make(**rule: Any) -> Client:
        return await make_gateway(
            str(store_server.make_url("")).rstrip("/"),
            authorization={"rules": {"delete_image": rule}},
        )

    return make


async def delete(client: Client, image_id: str, tok: str) -> int:
    response = await client.delete(f"/v2/images/{image_id}", headers={"X-Auth-Token": tok})
    return response.status


async def test_rackspace_rule_from_config_keeps_404_vs_403(
    rule_gateway: RuleGateway, store_app: web.Application, token: TokenFactory
) -> None:
    client = await rule_gateway(check=RACKSPACE["delete_image"])
    mine = add_image(store_app, owner="project-a")
    private = add_image(store_app, owner="project-b")
    public = add_image(store_app, owner="project-b", visibility="public")
    assert await delete(client, mine.id, token(roles=["cloudImages:creator"])) == 403
    assert await delete(client, private.id, token()) == 404
    assert await delete(client, public.id, token()) == 403
    assert await delete(client, mine.id, token()) == 204
    assert await delete(client, private.id, token("ops", roles=["admin"])) == 204


async def test_shadow_rule_logs_and_counts_and_lets_it_through(
    rule_gateway: RuleGateway,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await rule_gateway(check=RACKSPACE["delete_image"], shadow=True)
    assert client.app is not None
    policy = client.app[GATEWAY].policy
    image = add_image(store_app, owner="project-a")
    with caplog.at_level(logging.WARNING, logger="gateway.authorization"):
        assert await delete(client, image.id, token(roles=["cloudImages:observer"])) == 204
    assert image.id not in store_app[IMAGES]
    assert policy.shadow_refusals["delete_image"] == 1
    (record,) = [r for r in caplog.records if "shadow rule delete_image" in r.getMessage()]
    assert "would refuse 403" in record.getMessage()
    allowed = add_image(store_app, owner="project-a")
    assert await delete(client, allowed.id, token()) == 204
    assert policy.shadow_refusals["delete_image"] == 1, "an allowed request is not counted"
    assert [r.method for r in store_app[RECEIVED]].count("DELETE") == 2
    # The same caller again: the decision is the one already worked out, and
    # still counted.
    again = add_image(store_app, owner="project-a")
    assert await delete(client, again.id, token(roles=["cloudImages:observer"])) == 204
    assert policy.shadow_refusals["delete_image"] == 2


@pytest.mark.parametrize("path", ["config/gateway.yaml", "gateway/cli/demo.yaml"])
def test_shipped_configs_check(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(REPO / path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("policy", "expected"), [("policy.yaml", RACKSPACE), ("glance-policy.yaml", GLANCE)]
)
def test_shipped_policies_are_the_reference_policies(policy: str, expected: dict[str, str]) -> None:
    rules = compile_rules(yaml.safe_load((REPO / "config" / policy).read_text()))
    reference = compile_rules(expected)
    for who in [("admin",), ("member", "reader"), ("cloudimages:admin",), ("reader",)]:
        for owner in (None, "p1", "p2"):
            assert rules["delete_image"].evaluate(subject(*who, owner=owner)) is reference[
                "delete_image"
            ].evaluate(subject(*who, owner=owner))


def test_a_rule_given_twice_in_the_policy_file_is_refused(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policy.yaml").write_text("delete_image: '@'\ndelete_image: '!'\n")
    assert main(["check-config", str(write_config(tmp_path, keys, policy_file="policy.yaml"))]) == 2
    assert "key 'delete_image' is given twice" in capsys.readouterr().err
