"""Real OpenStack Glance for the integration tests, from PyPI, in `.glance-venv`.

`scripts/test` installs it; a missing install fails the tests that need it.
Glance is served as its docs say, by a WSGI server (gunicorn) running
`glance.wsgi.api:application`, with the shipped `keystone` paste pipeline
minus `authtoken`, so its `context` middleware builds the request context
from `X-Identity-Status`, `X-Project-Id`, `X-User-Id` and `X-Roles`: exactly
the headers the gateway sends. sqlite and the file store live in a temp dir.
With `enforce_new_defaults` Glance's own policy wants the roles `member`
(to delete) and `reader` (to see).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.served import wait_answering
from tests.support import REPO

GLANCE_VENV = REPO / ".glance-venv"
SHIPPED_PASTE_INI = GLANCE_VENV / "etc" / "glance" / "glance-api-paste.ini"
KEYSTONE_PIPELINE = "osprofiler authtoken context rootapp"

GLANCE_API_CONF = """\
[DEFAULT]
enabled_backends = fs:file
worker_self_reference_url = {url}
[database]
connection = sqlite:///{dir}/glance.sqlite
[paste_deploy]
flavor = keystone
config_file = {dir}/glance-api-paste.ini
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {dir}/images
[os_glance_staging_store]
filesystem_store_datadir = {dir}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {dir}/tasks
[oslo_policy]
enforce_new_defaults = true
enforce_scope = true
"""


@dataclass(frozen=True)
class Caller:
    """An identity as keystonemiddleware would hand it to Glance."""

    project: str
    user: str
    roles: tuple[str, ...]

    def headers(self) -> dict[str, str]:
        return {
            "X-Identity-Status": "Confirmed",
            "X-Project-Id": self.project,
            "X-User-Id": self.user,
            "X-Roles": ",".join(self.roles),
        }


ADMIN = Caller("operations", "root", ("admin", "member", "reader"))


@dataclass(frozen=True)
class Glance:
    url: str
    log: Path

    async def request(
        self, method: str, path: str, caller: Caller, json: Any = None
    ) -> tuple[int, Any]:
        """A request straight to Glance, bypassing the gateway."""
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, headers=caller.headers(), json=json) as r,
        ):
            body = await r.json() if r.content_type == "application/json" else None
            return r.status, body

    async def create_image(
        self, owner: Caller, *, visibility: str = "private", protected: bool = False
    ) -> str:
        body = {"name": f"{owner.project}-image", "visibility": visibility, "protected": protected}
        status, image = await self.request("POST", "/v2/images", owner, body)
        assert status == 201, image
        assert image["owner"] == owner.project
        return str(image["id"])

    async def share(self, image_id: str, owner: Caller, member: str) -> None:
        status, body = await self.request(
            "POST", f"/v2/images/{image_id}/members", owner, {"member": member}
        )
        assert status == 200, body

    async def exists(self, image_id: str) -> bool:
        status, _ = await self.request("GET", f"/v2/images/{image_id}", ADMIN)
        assert status in (200, 404)
        return status == 200


def _glance_binary(name: str) -> Path:
    path = GLANCE_VENV / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/test, which installs Glance in {GLANCE_VENV}")
    return path


def _write_config(directory: Path, url: str) -> None:
    for sub in ("images", "staging", "tasks"):
        (directory / sub).mkdir()
    shipped = SHIPPED_PASTE_INI.read_text()
    assert KEYSTONE_PIPELINE in shipped, "the shipped keystone pipeline changed"
    # The keystone pipeline minus authtoken: the context middleware then
    # trusts the identity headers, which only the gateway may send.
    paste = shipped.replace(KEYSTONE_PIPELINE, KEYSTONE_PIPELINE.replace("authtoken ", ""))
    (directory / "glance-api-paste.ini").write_text(paste)
    (directory / "glance-api.conf").write_text(GLANCE_API_CONF.format(url=url, dir=directory))


def run_glance(directory: Path, port: int, gunicorn_args: Sequence[str] = ()) -> Iterator[Glance]:
    """Glance under gunicorn; ``gunicorn_args`` adds settings (``--header-map``, say)."""
    gunicorn = _glance_binary("gunicorn")
    manage = _glance_binary("glance-manage")
    url = f"http://127.0.0.1:{port}"
    _write_config(directory, url)
    conf = directory / "glance-api.conf"
    log = directory / "glance.log"
    subprocess.run(
        [manage, "--config-file", conf, "db", "sync"],
        check=True,
        capture_output=True,
        cwd=directory,
    )
    env = {**os.environ, "OS_GLANCE_CONFIG_DIR": str(directory)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                gunicorn,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "8",
                *gunicorn_args,
                "glance.wsgi.api:application",
            ],
            cwd=directory,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_answering("Glance", f"{url}/healthcheck", process, log)
        yield Glance(url, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
