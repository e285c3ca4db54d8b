"""The ``image-gateway`` command, in-process, and ``demo`` end to end."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import aiohttp
import jwt
import pytest

from gateway import __version__
from gateway.authn.tokens import JwtVerifier
from gateway.cli.main import main
from gateway.config import load_config
from tests.support import REPO
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import free_port
from tests.support.tokens import HS_SECRET
from tests.support.waiting import until

DEMO_YAML = REPO / "gateway" / "cli" / "demo.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- check-config ---------------------------------------------------------------------------


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(DEMO_YAML)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{DEMO_YAML}: OK"
    assert err == ""


def test_check_config_ok_for_the_production_example(capsys: pytest.CaptureFixture[str]) -> None:
    gateway_yaml = REPO / "config" / "gateway.yaml"
    assert main(["check-config", str(gateway_yaml)]) == 0
    assert capsys.readouterr().out.strip() == f"{gateway_yaml}: OK"


def test_check_config_bad_file_names_the_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        "upstream:\n  urll: http://glance.test\n"
        f"auth:\n  keys: [{{algorithm: HS256, secret: {HS_SECRET}}}]\n",
    )
    assert main(["check-config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "invalid configuration" in err
    assert "upstream.urll: " in err


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_config_yaml_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.yaml", "upstream: [unclosed\n")
    assert main(["check-config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: image-gateway" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"image-gateway {__version__}"


# --- token ------------------------------------------------------------------------------------


def test_token_is_accepted_by_the_verifier(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "token",
        "--config",
        str(DEMO_YAML),
        "--project",
        "p",
        "--user",
        "u",
        "--roles",
        "a,b",
        "--ttl",
        "60",
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    token = out.strip()
    assert out.count("\n") == 1  # the token alone, on one line, for $(...)

    identity = asyncio.run(JwtVerifier(load_config(DEMO_YAML).auth).verify(token))
    assert identity.project_id == "p"
    assert identity.user_id == "u"
    assert identity.roles == frozenset({"a", "b"})

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(token)["kid"] == "demo"


def test_token_roles_are_trimmed_and_may_be_empty(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "--config", str(DEMO_YAML), "--project", "p", "--user", "u"]
    assert main([*argv, "--roles", " x , ,y "]) == 0
    verifier = JwtVerifier(load_config(DEMO_YAML).auth)
    identity = asyncio.run(verifier.verify(capsys.readouterr().out.strip()))
    assert identity.roles == frozenset({"x", "y"})
    assert main(argv) == 0
    assert asyncio.run(verifier.verify(capsys.readouterr().out.strip())).roles == frozenset()


def test_token_without_dev_signing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(
        tmp_path / "prod.yaml",
        "upstream: {url: 'http://glance.test'}\n"
        f"auth:\n  keys: [{{kid: hs, algorithm: HS256, secret: {HS_SECRET}}}]\n",
    )
    argv = ["token", "--config", str(config), "--project", "p", "--user", "u"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "auth.dev_signing_key" in err


def test_token_with_an_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "bad.yaml", "upstream: {url: 'ftp://glance.test'}\n")
    argv = ["token", "--config", str(config), "--project", "p", "--user", "u"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "upstream.url: " in err
    assert "auth: " in err


# --- demo, end to end -------------------------------------------------------------------------

READY = "Ctrl-C stops it."


async def test_demo_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "IMAGE_GATEWAY_DEMO_SECRET"}
    proc = GatewayProcess(("demo", "--port", str(port)), port, tmp_path, "demo", env=env)
    await proc.start()
    try:
        # The banner comes once the gateway listens, its last line last.
        await until(lambda: READY in proc.output(), "the demo's banner", deadline=20)
        banner = proc.output()

        tokens = dict(re.findall(r"^\s*export (\w+)=(\S+)", banner, re.MULTILINE))
        assert set(tokens) == {"ALICE", "OLIVIA", "ROOT"}
        match = re.search(r"^\s*204 alice deletes her image\s.*?(http://\S+)", banner, re.MULTILINE)
        assert match, banner
        url = match.group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/images/")

        async with aiohttp.ClientSession() as session:
            async with session.delete(url, headers={"X-Auth-Token": tokens["ALICE"]}) as first:
                assert first.status == 204, await first.text()
            async with session.delete(url, headers={"X-Auth-Token": tokens["ALICE"]}) as again:
                assert again.status == 404, await again.text()
            async with session.delete(url) as anonymous:
                assert anonymous.status == 401, await anonymous.text()
                realm = anonymous.headers["WWW-Authenticate"]
                assert realm == 'Bearer realm="image-gateway-demo"'
    finally:
        await proc.stop(deadline=10)


# --- run --workers ------------------------------------------------------------------------


def test_run_refuses_a_bad_worker_count_before_starting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--config", str(DEMO_YAML), "--workers", "many"]) == 2
    assert "--workers: a positive number or auto, not 'many'" in capsys.readouterr().err
