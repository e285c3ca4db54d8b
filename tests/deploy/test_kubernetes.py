"""deploy/kubernetes/sidecar.yaml against the image and the configuration schema.

The gateway container must run the image's entrypoint with its command's
configuration path, the ConfigMap's configuration must load (through the
gateway's schema) with the container's environment and the files its
volumes put beside it, and the ports, probes, user, volumes and grace
period must be what the image and that configuration say.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import __version__
from gateway.config import GatewayConfig
from tests.deploy.deployed_config import LOOPBACK_HOSTS, env_names_read, load_with
from tests.deploy.dockerfile import REPO, FinalStage, read_final_stage

SIDECAR = REPO / "deploy" / "kubernetes" / "sidecar.yaml"
GATEWAY_CONTAINER = "image-gateway"
# A Secret's value is not in the manifest; one long enough for admin.token.
SECRET_VALUE = "s" * 32


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for document in yaml.safe_load_all(SIDECAR.read_text()):
        assert document["kind"] not in by_kind, f"two {document['kind']}s"
        by_kind[document["kind"]] = document
    return by_kind


@pytest.fixture(scope="module")
def pod(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(documents["Deployment"]["spec"]["template"]["spec"])


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in pod["containers"] if c["name"] == GATEWAY_CONTAINER]
    return dict(found)


@pytest.fixture(scope="module")
def stage() -> FinalStage:
    return read_final_stage()


def _environment(container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        else:
            assert "secretKeyRef" in variable["valueFrom"], variable
            env[variable["name"]] = SECRET_VALUE
    return env


@pytest.fixture(scope="module")
def config(
    documents: dict[str, dict[str, Any]],
    pod: dict[str, Any],
    container: dict[str, Any],
    stage: FinalStage,
    tmp_path_factory: pytest.TempPathFactory,
) -> GatewayConfig:
    """The configuration as the pod lays it out: the ConfigMap's file at the
    command's path, the keys Secret beside it (filled with the repository's
    example key), loaded with the container's environment."""
    etc = tmp_path_factory.mktemp("etc-image-gateway")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_dir = stage.config_path.parent
    for mount in container["volumeMounts"]:
        path = Path(mount["mountPath"])
        if not path.is_relative_to(config_dir):
            continue
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            config_map = documents["ConfigMap"]
            assert volume["configMap"]["name"] == config_map["metadata"]["name"]
            assert path == stage.config_path
            (etc / path.name).write_text(config_map["data"][mount["subPath"]])
        else:
            assert volume["secret"]["secretName"]
            shutil.copytree(REPO / "config" / "keys", etc / path.relative_to(config_dir))
    return load_with(etc / stage.config_path.name, _environment(container))


def test_the_gateway_runs_the_image_entrypoint_with_its_config_path(
    container: dict[str, Any], stage: FinalStage, config: GatewayConfig
) -> None:
    assert "command" not in container  # the image's ENTRYPOINT
    assert stage.entrypoint == ("image-gateway",)
    assert tuple(container["args"]) == stage.cmd
    assert container["image"].endswith(f"/image-gateway:{__version__}")


def test_every_environment_variable_is_read_by_the_config_or_the_image(
    documents: dict[str, dict[str, Any]],
    container: dict[str, Any],
    stage: FinalStage,
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(documents["ConfigMap"]["data"]["gateway.yaml"])
    read = env_names_read(config_file) | set(stage.env)
    assert {variable["name"] for variable in container["env"]} <= read


def test_ports_are_the_configured_listeners_the_image_exposes(
    container: dict[str, Any], stage: FinalStage, config: GatewayConfig
) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": config.listen.port, "admin": config.admin.port}
    assert set(ports.values()) <= stage.exposed_ports
    # The kubelet probes the pod's address, not the container's loopback.
    assert config.admin.host not in LOOPBACK_HOSTS


def test_the_service_sends_clients_to_the_gateway_not_glance(
    documents: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    names = {port["name"] for port in container["ports"]}
    for port in documents["Service"]["spec"]["ports"]:
        assert port["targetPort"] in names


def test_probes_ask_the_admin_listener_what_the_image_healthcheck_asks(
    container: dict[str, Any], stage: FinalStage
) -> None:
    health_path = "/" + stage.env["IMAGE_GATEWAY_HEALTH_URL"].split("/", 3)[3]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": health_path, "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}


def test_the_grace_period_outlasts_the_pause_and_the_drain(
    pod: dict[str, Any], container: dict[str, Any], config: GatewayConfig, stage: FinalStage
) -> None:
    assert stage.stop_signal == "SIGTERM"  # what the kubelet sends
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert pod["terminationGracePeriodSeconds"] > pause + config.listen.shutdown_timeout


def test_it_runs_as_the_image_user_on_a_read_only_root(
    pod: dict[str, Any], container: dict[str, Any], stage: FinalStage
) -> None:
    security = container["securityContext"]
    uid, gid = (int(part) for part in stage.user.split(":"))
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for declared in stage.volumes:
        assert "emptyDir" in mounted[declared]


def test_a_disruption_budget_keeps_a_pod_serving(documents: dict[str, dict[str, Any]]) -> None:
    deployment = documents["Deployment"]
    budget = documents["PodDisruptionBudget"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["minAvailable"] < deployment["spec"]["replicas"]
