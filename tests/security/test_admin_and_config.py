"""The admin listener answers only to its names and needs a token off loopback;
the configuration is validated by one path and loaded within bounds."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from gateway.admin.host import host_name
from gateway.cli.main import main
from gateway.config import ConfigError, load_config, parse_config
from tests.support.gateway_config import config_data
from tests.support.observed import ObservedFactory
from tests.support.tokens import Keys


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9090", "127.0.0.1.nip.io"])
async def test_the_dashboard_refuses_a_rebound_host_name(
    observe_standin: ObservedFactory, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    observed = await observe_standin()
    caplog.set_level(logging.WARNING, logger="gateway.admin")
    for path in ("/", "/api/audit", "/metrics"):
        caplog.clear()
        response = await observed.admin.get(path, headers={"Host": host})
        assert response.status == 403
        assert list(await response.json()) == ["forbidden"]
        # The refusal is logged under the id the fault carries.
        request_id = response.headers["X-OpenStack-Request-Id"]
        refusals = [r for r in caplog.records if "admin request refused" in r.getMessage()]
        assert [getattr(r, "request_id", None) for r in refusals] == [request_id]
    # Probes answer any Host (the kubelet sends the pod's IP).
    assert (await observed.admin.get("/healthz", headers={"Host": host})).status == 200


@pytest.mark.parametrize(
    "host", ["localhost:9090", "127.0.0.1", "[::1]:9090", "admin.internal", "ADMIN.internal:1"]
)
async def test_loopback_and_configured_names_are_answered(
    observe_standin: ObservedFactory, host: str
) -> None:
    observed = await observe_standin(admin={"allowed_hosts": ["admin.internal"]})
    assert (await observed.admin.get("/api/audit", headers={"Host": host})).status == 200


def test_host_name_drops_port_and_brackets() -> None:
    assert host_name("Example.COM:80") == "example.com"
    assert host_name("[::1]:9090") == "::1"
    assert host_name("::1") == "::1"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "admin.example"])
def test_a_non_loopback_admin_bind_without_a_token_is_refused(keys: Keys, host: str) -> None:
    with pytest.raises(ConfigError, match=r"admin\.token is required when admin\.host"):
        parse_config(config_data("http://127.0.0.1:1", keys, admin={"host": host}))
    token = {"host": host, "token": "a-long-enough-admin-token"}
    assert parse_config(config_data("http://127.0.0.1:1", keys, admin=token)).admin.token


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("realm", ['a"b', "a\\b", "tab\there", "é"])
def test_check_config_refuses_what_run_would_refuse(
    keys: Keys, tmp_path: Path, realm: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = config_data("http://127.0.0.1:1", keys, auth={"realm": realm})
    config = write(tmp_path / "g.yaml", data)
    assert main(["check-config", str(config)]) == 2
    assert "auth.realm: must be printable ASCII" in capsys.readouterr().err


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match="aliases are expanded"):
        load_config(path)


def test_a_huge_yaml_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_anchors_and_aliases_within_bounds_still_work(keys: Keys, tmp_path: Path) -> None:
    data = config_data("http://127.0.0.1:1", keys)
    roles = ["admin", "cloudImages:admin"]
    data["authorization"] = {"admin_roles": roles, "routes": {"image:delete": {"roles": roles}}}
    text = yaml.safe_dump(data)  # the shared list becomes an anchor and an alias
    assert "&id001" in text
    assert "*id001" in text
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    assert load_config(path).authorization.admin_roles == roles
