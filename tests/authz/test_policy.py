"""Policy as configured: both reference policies as files, shadow mode, a
malformed rule refused by check-config with its name, and the decisions
(gateway/authz/policy.py) that an image's owner settles."""

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
from gateway.cli.main import main
from gateway.demo_backend.image_store import IMAGES, RECEIVED, add_image
from gateway.policy_language import compile_rules
from tests.support import REPO
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory
from tests.test_policy_language import GLANCE, RACKSPACE, subject

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


async def test_a_look_alike_project_neither_owns_nor_learns_of_an_image(
    rule_gateway: RuleGateway, store_app: web.Application, token: TokenFactory
) -> None:
    """Project ids are compared exactly: Project-A is not project-a."""
    client = await rule_gateway(check=RACKSPACE["delete_image"])
    private = add_image(store_app, owner="project-a")
    public = add_image(store_app, owner="project-a", visibility="public")
    look_alike = token("Project-A")
    # Its private image stays hidden (404, as any other project's), its
    # public one is refused, and neither is deleted.
    assert await delete(client, private.id, look_alike) == 404
    assert await delete(client, public.id, look_alike) == 403
    images = store_app[IMAGES]
    assert private.id in images
    assert public.id in images
    assert [r.method for r in store_app[RECEIVED]].count("DELETE") == 0


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
