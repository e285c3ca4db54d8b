"""deploy/compose.yaml against the image it builds and the configuration schema.

Read as Compose reads it (paths relative to the file): the gateway's build,
command, port, volumes and environment must be what deploy/Dockerfile
declares and what the mounted configuration loads with; Glance and Redis are
reachable only on internal networks they share with the gateway alone.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway import __version__
from gateway.config import GatewayConfig
from tests.deploy.deployed_config import (
    LOOPBACK_HOSTS,
    compose_value,
    env_names_read,
    host_port,
    load_with,
)
from tests.deploy.dockerfile import DOCKERFILE, REPO, FinalStage, read_final_stage

COMPOSE = REPO / "deploy" / "compose.yaml"
REDIS_PORT = 6379


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def gateway(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"]["gateway"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: compose_value(str(value)) for name, value in service["environment"].items()}


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path to host path, for the binds (not the named volumes)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = (COMPOSE.parent / source).resolve()
    return mounts


def _dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    return (COMPOSE.parent / str(build["context"]) / str(build["dockerfile"])).resolve()


@pytest.fixture(scope="module")
def stage(gateway: dict[str, Any]) -> FinalStage:
    assert _dockerfile(gateway) == DOCKERFILE
    return read_final_stage()


@pytest.fixture(scope="module")
def config(gateway: dict[str, Any], stage: FinalStage) -> GatewayConfig:
    """The configuration the gateway container starts with, as the schema reads it."""
    assert tuple(gateway["command"]) == stage.cmd
    assert tuple(gateway.get("entrypoint", stage.entrypoint)) == stage.entrypoint
    mounted = _bind_mounts(gateway)[str(stage.config_path.parent)]
    return load_with(mounted / stage.config_path.name, _environment(gateway))


def test_the_services_are_the_gateway_glance_and_redis(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"gateway", "glance", "redis"}
    glance = compose["services"]["glance"]
    assert _dockerfile(glance).exists()
    assert glance["image"].endswith(":31.0.0")
    pins = (REPO / "tests" / "integration" / "glance-requirements.txt").read_text()
    assert "glance==31.0.0" in pins.split()


def test_the_gateway_is_this_image_and_version(gateway: dict[str, Any], stage: FinalStage) -> None:
    assert gateway["image"] == f"image-gateway:{__version__}"


def test_the_mounted_configuration_is_the_readme_production_example(
    gateway: dict[str, Any], stage: FinalStage
) -> None:
    mounted = _bind_mounts(gateway)[str(stage.config_path.parent)]
    assert mounted == REPO / "config"
    assert (mounted / stage.config_path.name) == REPO / "config" / "gateway.yaml"
    assert gateway["volumes"] == [f"../config:{stage.config_path.parent}:ro"]


def test_every_environment_variable_is_read_by_the_config_or_the_image(
    gateway: dict[str, Any], stage: FinalStage, config: GatewayConfig
) -> None:
    config_file = REPO / "config" / "gateway.yaml"
    read = env_names_read(config_file) | set(stage.env)
    assert set(gateway["environment"]) <= read


def test_the_published_port_is_the_listen_port_the_image_exposes(
    gateway: dict[str, Any], stage: FinalStage, config: GatewayConfig
) -> None:
    published = {int(str(mapping).split(":")[-1]) for mapping in gateway["ports"]}
    assert published == {config.listen.port}
    assert published <= stage.exposed_ports
    # The admin listener stays on the container's loopback, where the image's
    # HEALTHCHECK asks it, so there is nothing of it to publish.
    assert config.admin.host in LOOPBACK_HOSTS
    assert host_port(stage.env["IMAGE_GATEWAY_HEALTH_URL"], 80) == ("127.0.0.1", config.admin.port)
    assert config.admin.port in stage.exposed_ports


def test_a_read_only_root_gets_every_declared_volume_as_tmpfs(
    gateway: dict[str, Any], stage: FinalStage
) -> None:
    assert gateway["read_only"] is True
    assert set(stage.volumes) <= set(gateway["tmpfs"])


def test_stopping_waits_longer_than_the_drain(
    gateway: dict[str, Any], config: GatewayConfig
) -> None:
    grace = gateway["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace.removesuffix("s")) > config.listen.shutdown_timeout


def _networks(compose: dict[str, Any], service: str) -> set[str]:
    return set(compose["services"][service]["networks"])


def test_glance_is_reached_only_by_the_gateway_on_an_internal_network(
    compose: dict[str, Any], config: GatewayConfig
) -> None:
    host, port = host_port(str(config.upstream.url), 80)
    assert host == "glance"
    glance = compose["services"]["glance"]
    assert port in read_final_stage(_dockerfile(glance)).exposed_ports
    assert "ports" not in glance
    for network in _networks(compose, "glance"):
        assert compose["networks"][network]["internal"] is True
        members = {name for name in compose["services"] if network in _networks(compose, name)}
        assert members == {"gateway", "glance"}
    # Glance's own idea of its URL matches the name the gateway uses.
    glance_conf = (REPO / "deploy" / "glance" / "glance-api.conf").read_text()
    assert f"worker_self_reference_url = http://glance:{port}" in glance_conf


def test_redis_is_the_shared_store_on_an_internal_network(
    compose: dict[str, Any], config: GatewayConfig
) -> None:
    assert config.rate_limit.store == "redis"
    assert config.revocation.store == "redis"
    for section in (config.rate_limit.redis, config.revocation.redis):
        assert section is not None
        assert section.url is not None
        assert host_port(section.url, REDIS_PORT) == ("redis", REDIS_PORT)
    redis = compose["services"]["redis"]
    assert "ports" not in redis
    for network in _networks(compose, "redis"):
        assert compose["networks"][network]["internal"] is True
        members = {name for name in compose["services"] if network in _networks(compose, name)}
        assert members == {"gateway", "redis"}


def test_the_glance_volume_is_the_one_its_image_declares(compose: dict[str, Any]) -> None:
    glance = compose["services"]["glance"]
    declared = read_final_stage(_dockerfile(glance)).volumes
    targets = {PurePosixPath(v.split(":")[1]) for v in glance["volumes"]}
    assert targets == {PurePosixPath(v) for v in declared}
    assert set(compose["volumes"]) == {v.split(":")[0] for v in glance["volumes"]}
