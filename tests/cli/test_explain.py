"""`image-gateway explain`: each step's decision and why, and nothing forwarded."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.cli.explain import Explanation, explain
from gateway.config import parse_config
from gateway.demo_backend.image_store import IMAGES, RECEIVED, add_image
from tests.support import REPO
from tests.support.gateway_app import GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory
from tests.support.upstreams import ImageDataBackend

ExplainFor = Callable[..., Awaitable[Explanation]]


@pytest.fixture
def explain_for(keys: Keys, store_server: TestServer) -> ExplainFor:
    config = parse_config(config_data(str(store_server.make_url("")).rstrip("/"), keys))

    async def run(token: str, method: str, path: str, owner_lookup: bool = True) -> Explanation:
        return await explain(config, token, method, path, owner_lookup=owner_lookup)

    return run


def step(result: Explanation, name: str) -> str:
    (found,) = [s for s in result.steps if s.name == name]
    return found.why


async def test_owner_would_be_forwarded_and_nothing_is_sent(
    explain_for: ExplainFor, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    result = await explain_for(token(), "DELETE", f"/v2/images/{image.id}")
    assert result.outcome is True
    assert "key kid rsa RS256 from config" in step(result, "authentication")
    assert "project project-a (claim project_id)" in step(result, "authentication")
    assert "deletes: 1000/minute as project:project-a" in step(result, "rate limit")
    assert "project project-a owns the image" in step(result, "authorization")
    assert step(result, "proxy").startswith("DELETE http://127.0.0.1:")
    assert "would be forwarded (nothing was sent)" in result.render()
    # The owner look-up was a GET; nothing was deleted.
    assert [r.method for r in store_app[RECEIVED]] == ["GET"]
    assert image.id in store_app[IMAGES]


async def test_each_refusal_names_its_step(
    explain_for: ExplainFor, store_app: web.Application, token: TokenFactory
) -> None:
    hidden = add_image(store_app, owner="project-b")
    cases = {
        ("PUT", f"/v2/images/{hidden.id}", token()): (
            "route",
            "405: Method PUT is not allowed on this resource. Allowed: DELETE, GET, PATCH.",
        ),
        ("DELETE", "/v2/flavors/1", token()): ("route", "404: The resource could not be found."),
        ("DELETE", "/v2/images/not-a-uuid", token()): (
            "route",
            "400: Invalid image_id: must be a UUID. Expected 8-4-4-4-12",
        ),
        ("DELETE", f"/v2/images/{hidden.id}", token(ttl=-60)): (
            "authentication",
            "401: The request you have made requires authentication. The token has expired.",
        ),
        ("DELETE", f"/v2/images/{hidden.id}", token(roles=["cloudImages:observer"])): (
            "authorization",
            "403: rule delete_image",
        ),
        ("DELETE", f"/v2/images/{hidden.id}", token()): ("authorization", "404: rule delete_image"),
    }
    for (method, path, tok), (name, why) in cases.items():
        result = await explain_for(tok, method, path)
        assert result.outcome is False, (method, path)
        assert result.steps[-1].name == name
        assert result.steps[-1].why.startswith(why), result.render()
    assert hidden.id in store_app[IMAGES]


async def test_admin_needs_no_owner_look_up_and_a_skipped_one_is_undecided(
    explain_for: ExplainFor, store_app: web.Application, token: TokenFactory
) -> None:
    image_id = str(uuid.uuid4())
    admin = await explain_for(token(roles=["admin"]), "DELETE", f"/v2/images/{image_id}")
    assert admin.outcome is True
    assert "roles (admin) satisfy it" in step(admin, "authorization")
    skipped = await explain_for(token(), "DELETE", f"/v2/images/{image_id}", owner_lookup=False)
    assert skipped.outcome is None
    assert "look-up was skipped" in step(skipped, "authorization")
    assert len(store_app[RECEIVED]) == 0


def test_cli_prints_the_steps_and_exits_by_the_outcome(
    tmp_path: Path, keys: Keys, token: TokenFactory
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_data("http://127.0.0.1:1", keys)))
    image = str(uuid.uuid4())
    command = [sys.executable, "-m", "gateway", "explain", "--config", str(path)]
    admin = subprocess.run(
        [*command, "--token", token(roles=["admin"]), "DELETE", f"/images/{image}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert admin.returncode == 0, admin.stderr
    assert [line.split()[0] for line in admin.stdout.splitlines()] == [
        "route",
        "authentication",
        "rate",
        "authorization",
        "proxy",
        "result",
    ]
    forged = subprocess.run(
        [*command, "--token", "not-a-token", "--no-owner-lookup", "DELETE", f"/images/{image}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert forged.returncode == 1
    assert (
        "authentication  STOP  401: The request you have made requires authentication. "
        "The token is malformed." in forged.stdout
    )
    assert "not-a-token" not in forged.stdout + forged.stderr
    member = ["--token", token(), "DELETE", f"/images/{image}"]
    undecided = subprocess.run(
        [*command, "--no-owner-lookup", *member], cwd=REPO, capture_output=True, text=True
    )
    assert undecided.returncode == 3, undecided.stderr
    assert "result          ??    undecided (nothing was sent)" in undecided.stdout
    # Nothing listens at the configured upstream: the look-up fails, cleanly.
    unreachable = subprocess.run([*command, *member], cwd=REPO, capture_output=True, text=True)
    assert unreachable.returncode == 1, unreachable.stderr
    assert "authorization   STOP  503: the owner look-up failed" in unreachable.stdout
    assert unreachable.stderr == ""


@pytest.mark.parametrize(
    "hostile",
    ["ab\udcffcd", "eyJhbGciOlsiUlMyNTYiXX0.e30.c2ln"],
    ids=["non-UTF-8 byte", "alg is a list"],
)
async def test_a_hostile_token_is_a_refusal_not_an_error(
    explain_for: ExplainFor, hostile: str
) -> None:
    result = await explain_for(hostile, "DELETE", f"/v2/images/{uuid.uuid4()}")
    assert result.outcome is False
    assert step(result, "authentication").startswith("401: ")
    assert "The token" in step(result, "authentication")


async def test_an_image_id_with_a_trailing_newline_is_not_a_uuid(
    explain_for: ExplainFor, token: TokenFactory
) -> None:
    result = await explain_for(token(), "DELETE", f"/v2/images/{uuid.uuid4()}\n")
    assert result.outcome is False


async def test_explain_counts_nothing_and_sees_what_the_gateway_counted(
    keys: Keys,
    store_server: TestServer,
    redis_url: str,
    token: TokenFactory,
    make_gateway: GatewayFactory,
) -> None:
    upstream = str(store_server.make_url("")).rstrip("/")
    one_a_minute = {
        "store": "redis",
        "redis": {"url": redis_url},
        "rules": [{"name": "deletes", "unit": "minute", "value": 1}],
    }
    config = parse_config(config_data(upstream, keys, rate_limit=one_a_minute))
    tok = token(roles=["admin"])
    path = f"/v2/images/{uuid.uuid4()}"
    for _ in range(3):
        assert (await explain(config, tok, "DELETE", path)).outcome is True
    # The same chain, counting: its one allowed request is still there.
    gateway = await make_gateway(upstream, rate_limit=one_a_minute)
    first = await gateway.delete(path, headers={"X-Auth-Token": tok})
    assert first.status == 404, "the one request a minute went through to the store"
    over = await explain(config, tok, "DELETE", path)
    assert over.outcome is False
    assert over.steps[-1].name == "rate limit"
    assert over.steps[-1].why.startswith("413: This request was rate-limited. Over limit deletes.")


async def test_explain_names_the_byte_rule_a_body_of_that_size_would_meet(
    keys: Keys,
    image_backend: tuple[ImageDataBackend, str],
    redis_url: str,
    token: TokenFactory,
    make_gateway: GatewayFactory,
) -> None:
    upstream = image_backend[1]
    one_mib_a_day = {
        "store": "redis",
        "redis": {"url": redis_url},
        "rules": [{"name": "upload-bytes", "count": "bytes", "unit": "day", "value": "1MiB"}],
    }
    config = parse_config(config_data(upstream, keys, rate_limit=one_mib_a_day))
    tok = token(roles=["admin"])
    path = f"/v2/images/{uuid.uuid4()}/file"
    fits = await explain(config, tok, "PUT", path, size=512 << 10)
    assert fits.outcome is True
    assert step(fits, "bytes") == (
        "512.0 KiB fits: upload-bytes: 1.0 MiB of 1.0 MiB/day left as project:project-a"
    )
    never = await explain(config, tok, "PUT", path, size=2 << 20)
    assert never.outcome is False
    assert step(never, "bytes") == (
        "413: a 2.0 MiB body would be refused by upload-bytes (1.0 MiB/day as "
        "project:project-a) has 1.0 MiB left: it is more than the whole budget"
    )
    assert "proxy" not in [s.name for s in never.steps]
    # Nothing was reserved by either look.
    assert redis.Redis.from_url(redis_url).keys("igw:bytes:*") == []
    # The gateway, counting: 800 KiB moved, and 512 KiB no longer fit.
    gateway = await make_gateway(upstream, rate_limit=one_mib_a_day)
    headers = {"X-Auth-Token": tok, "Content-Type": "application/octet-stream"}
    assert (await gateway.put(path, data=b"x" * (800 << 10), headers=headers)).status == 204
    later = await explain(config, tok, "PUT", path, size=512 << 10)
    assert later.outcome is False
    assert step(later, "bytes").endswith("has 224.0 KiB left: room in 24.0 h")
    # The rule counts downloads too (it names no routes).
    downloads = await explain(config, tok, "GET", path, size=200 << 10)
    assert step(downloads, "bytes").startswith("200.0 KiB fits: upload-bytes: 224.0 KiB of")
    listing = await explain(config, tok, "GET", "/v2/images", size=512 << 10)
    assert step(listing, "bytes") == "no byte rule counts get_images"


def test_cli_reads_the_size_as_people_write_it(
    tmp_path: Path, keys: Keys, token: TokenFactory
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_data("http://127.0.0.1:1", keys)))
    command = [sys.executable, "-m", "gateway", "explain", "--config", str(path)]
    target = ["--token", token(roles=["admin"]), "GET", "/v2/images"]
    bad = subprocess.run(
        [*command, "--bytes", "4GiBs", *target], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "--bytes: could not interpret byte unit: GiBs" in bad.stderr
    good = subprocess.run(
        [*command, "--bytes", "4GiB", *target], cwd=REPO, capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    assert "bytes           ok    no byte rule counts get_images" in good.stdout
