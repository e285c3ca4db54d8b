"""The OpenStack clients, from PyPI, in `.openstack-venv`, driven against the gateway.

`scripts/test` installs them; a missing install fails the tests that need them.
Each runs as a child process while the test's event loop keeps serving the
gateway, so a client talks to it over a real socket as it would in use.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

OPENSTACK_VENV = REPO / ".openstack-venv"
CLIENT_SCRIPTS = Path(__file__).resolve().parent / "clients"
SHIPPED_CONFIG = REPO / "config" / "gateway.yaml"
# A client call that takes longer than this is hung, not slow.
CLIENT_TIMEOUT = 180.0


def client_binary(name: str) -> Path:
    path = OPENSTACK_VENV / "bin" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run scripts/test, which installs the clients in {OPENSTACK_VENV}"
        )
    return path


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr[-3000:]
        return json.loads(self.stdout)


async def run_client(*argv: str | Path, env: dict[str, str] | None = None) -> Finished:
    """One client invocation, in the background of the running event loop."""
    process = await asyncio.create_subprocess_exec(
        *map(str, argv),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


async def run_script(name: str, settings: dict[str, Any]) -> Any:
    """A program of tests/integration/clients/, run by the clients' Python."""
    finished = await run_client(
        client_binary("python"), CLIENT_SCRIPTS / name, json.dumps(settings)
    )
    return finished.json()


def shipped_sections() -> dict[str, Any]:
    """What config/gateway.yaml says about authorization and backend roles:
    the part of the shipped configuration that must work with stock Glance."""
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    authorization = dict(shipped["authorization"])
    authorization["policy_file"] = str(SHIPPED_CONFIG.parent / authorization["policy_file"])
    return {
        "authorization": authorization,
        "upstream": {"role_mapping": shipped["upstream"]["role_mapping"]},
    }


@dataclass(frozen=True)
class ImageData:
    path: Path
    size: int
    md5: str


def write_image_data(path: Path, size: int) -> ImageData:
    """``size`` bytes that are not all alike, written in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    block = hashlib.sha256(b"image-gateway").digest() * (1 << 15)
    with path.open("wb") as out:
        for index in range(size // len(block)):
            chunk = index.to_bytes(8, "big") + block[8:]
            out.write(chunk)
            digest.update(chunk)
    return ImageData(path, size, digest.hexdigest())


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
