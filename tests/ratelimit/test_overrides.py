"""Per-tenant overrides: set with the CLI, seen by every replica within a second."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import REPO
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data, write_config
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory
from tests.support.upstreams import ImageDataBackend, ScriptedUpstream
from tests.support.waiting import seconds_until

RULES = [
    {"name": "deletes", "path": "^/(v2/)?images/", "unit": "minute", "value": 5},
    {"name": "all", "unit": "minute", "value": 1000, "by": "global"},
    {"name": "upload-bytes", "count": "bytes", "unit": "day", "value": "1MiB"},
]


@pytest.fixture
def config_file(tmp_path: Path, keys: Keys, redis_url: str) -> Path:
    data = config_data(
        "http://127.0.0.1:1",
        keys,
        rate_limit={"store": "redis", "redis": {"url": redis_url}, "rules": RULES},
    )
    return write_config(tmp_path / "gateway.yaml", data)


def limits_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "limits", *args, "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def _deletes_limit(client: Client, tok: str, rule: str = "deletes") -> int:
    response = await client.get("/limits", headers={"X-Auth-Token": tok})
    body = await response.json()
    [deletes] = [e for e in body["limits"]["rate"] if e["name"] == rule]
    return int(deletes["limit"][0]["value"])


async def _until_limit(clients: list[Client], tok: str, value: int, rule: str = "deletes") -> float:
    async def everywhere() -> bool:
        return [await _deletes_limit(c, tok, rule) for c in clients] == [value] * len(clients)

    return await seconds_until(everywhere, "every replica to see the override", deadline=3)


async def test_override_reaches_every_replica_within_a_second_and_is_enforced(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    config_file: Path,
    redis_url: str,
    token: TokenFactory,
) -> None:
    section: dict[str, Any] = {"store": "redis", "redis": {"url": redis_url}, "rules": RULES}
    replicas = [await make_gateway(scripted[1], rate_limit=section) for _ in range(2)]
    tok = token(roles=["admin"])
    assert await _until_limit(replicas, tok, 5) < 1.0

    done = limits_cli(
        config_file, "set", "--project", "project-a", "--rule", "deletes", "--value", "2"
    )
    assert done.returncode == 0, done.stderr
    assert await _until_limit(replicas, tok, 2) < 1.0
    statuses = []
    for replica in [*replicas, *replicas]:
        response = await replica.delete(
            "/v2/images/8b5e1f8e-9d1c-4a5c-9f0e-3d0f6f1f2a3b", headers={"X-Auth-Token": tok}
        )
        statuses.append(response.status)
    assert statuses == [204, 204, 413, 413]
    # Another project keeps the configured value.
    assert await _deletes_limit(replicas[0], token("project-b", roles=["admin"])) == 5

    listed = limits_cli(config_file, "get", "--project", "project-a")
    assert listed.stdout.strip() == "project-a deletes = 2"
    cleared = limits_cli(config_file, "clear", "--project", "project-a")
    assert cleared.returncode == 0, cleared.stderr
    assert "removed 1" in cleared.stdout
    assert await _until_limit(replicas, tok, 5) < 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "--project", "p", "--rule", "nope", "--value", "3"], "no rule 'nope'"),
        (["set", "--project", "p", "--rule", "deletes", "--value", "0"], "from 1 to"),
        (["set", "--project", "p", "--rule", "all", "--value", "3"], "no tenant"),
        (["set", "--project", "p", "--rule", "deletes", "--value", "x"], "requests, not x"),
        (["set", "--project", "p", "--rule", "deletes", "--value", "2GiB"], "requests, not 2GiB"),
        (
            ["set", "--project", "p", "--rule", "upload-bytes", "--value", "2GiBs"],
            "--value of byte rule 'upload-bytes': could not interpret byte unit: GiBs",
        ),
        (
            ["set", "--project", "p", "--rule", "upload-bytes", "--value", "2PiB"],
            "from 1 byte to 1.0 PiB",
        ),
    ],
)
def test_bad_overrides_are_refused_and_change_nothing(
    config_file: Path, redis_url: str, args: list[str], message: str
) -> None:
    done = limits_cli(config_file, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert redis.Redis.from_url(redis_url).hgetall("igw:overrides") == {}


async def test_a_byte_rule_is_overridden_with_a_size(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    config_file: Path,
    redis_url: str,
    token: TokenFactory,
) -> None:
    section: dict[str, Any] = {"store": "redis", "redis": {"url": redis_url}, "rules": RULES}
    gateway = await make_gateway(image_backend[1], rate_limit=section)
    done = limits_cli(
        config_file, "set", "--project", "project-a", "--rule", "upload-bytes", "--value", "2MiB"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "project-a upload-bytes = 2097152 (2.0 MiB)"
    listed = limits_cli(config_file, "get")
    assert listed.stdout.strip() == "project-a upload-bytes = 2097152 (2.0 MiB)"
    tok = token(roles=["admin"])
    headers = {"X-Auth-Token": tok, "Content-Type": "application/octet-stream"}
    path = "/v2/images/8b5e1f8e-9d1c-4a5c-9f0e-3d0f6f1f2a3b/file"
    assert await _until_limit([gateway], tok, 2 << 20, "upload-bytes") < 1.0
    # 1.5 MiB: over the configured 1 MiB, within the project's 2 MiB.
    uploaded = await gateway.put(path, data=b"x" * (3 << 19), headers=headers)
    assert uploaded.status == 204
    assert (
        '"upload-bytes";q=2097152;qu="content-bytes";w=86400'
        in (uploaded.headers["RateLimit-Policy"])
    )
    refused = await gateway.put(path, data=b"x" * (3 << 19), headers=headers)
    assert refused.status == 413


def test_overrides_need_redis(tmp_path: Path, keys: Keys) -> None:
    path = write_config(tmp_path / "memory.yaml", config_data("http://127.0.0.1:1", keys))
    done = limits_cli(path, "get")
    assert done.returncode == 2
    assert "rate_limit.redis is not configured" in done.stderr


def test_unreachable_redis_is_reported(tmp_path: Path, keys: Keys) -> None:
    section = {"store": "redis", "redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}}
    path = write_config(
        tmp_path / "dead.yaml", config_data("http://127.0.0.1:1", keys, rate_limit=section)
    )
    done = limits_cli(path, "set", "--project", "p", "--rule", "any", "--value", "3")
    assert done.returncode == 2
    assert "no rule 'any'" in done.stderr
    done = limits_cli(path, "get")
    assert done.returncode == 2
    assert "cannot reach Redis" in done.stderr
