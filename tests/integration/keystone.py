"""Real OpenStack Keystone for the integration tests, from PyPI, in `.keystone-venv`.

`scripts/test` installs it; a missing install fails the tests that need it.
sqlite and Fernet keys live in a temp dir (`keystone-manage db_sync`,
`fernet_setup`, `bootstrap`); gunicorn serves it from a small module that
clears `sys.argv` before importing `keystone.server.wsgi`, whose oslo.config
would otherwise parse gunicorn's own arguments. Users, projects and role
assignments are made through Keystone's API. Keystone's access log is where
the tests count the validations Keystone itself served.
"""

from __future__ import annotations

import getpass
import grp
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.served import wait_answering
from tests.support import REPO

KEYSTONE_VENV = REPO / ".keystone-venv"
ADMIN_PASSWORD = "keystone-admin-" + uuid.uuid4().hex

KEYSTONE_CONF = """\
[DEFAULT]
log_file = {dir}/keystone.log
[database]
connection = sqlite:///{dir}/keystone.sqlite
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-receipts
[credential]
key_repository = {dir}/credential-keys
[identity]
# bcrypt's minimum cost: every test user's password is hashed and checked.
password_hash_rounds = 4
[token]
provider = fernet
expiration = 3600
[cache]
enabled = true
backend = dogpile.cache.memory
"""

WSGI_MODULE = """\
import sys

# keystone.server.wsgi parses sys.argv with oslo.config: gunicorn's own
# arguments would be taken for Keystone's.
sys.argv = sys.argv[:1]

from keystone.server.wsgi import initialize_public_application

application = initialize_public_application()
"""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    password: str
    project_id: str
    project_name: str


# The user `keystone-manage bootstrap` made, admin on the project "admin".
BOOTSTRAP_ADMIN = User("", "admin", ADMIN_PASSWORD, "", "admin")


@dataclass
class Keystone:
    url: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    _admin_token: str | None = field(default=None, repr=False)

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def _access_lines(self) -> list[str]:
        """Every request Keystone answered so far, in order.

        Keystone runs one single-threaded worker, which writes a request's
        access-log line before it takes the next request: once a marker
        request's line is there, so is every line before it.
        """
        marker = uuid.uuid4().hex
        self.call("GET", f"/v3?marker={marker}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
            if any(marker in line for line in lines):
                return lines
            time.sleep(0.01)  # polling the log for the marker, with a deadline
        raise AssertionError("Keystone's access log never showed the marker request")

    def validations(self) -> int:
        """GET /v3/auth/tokens requests Keystone has answered: validations it served."""
        return sum('"GET /v3/auth/tokens' in line for line in self._access_lines())

    def issued(self) -> int:
        """POST /v3/auth/tokens requests Keystone has answered."""
        return sum('"POST /v3/auth/tokens' in line for line in self._access_lines())

    # --- its API ---

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("X-Auth-Token", token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, dict(response.headers), json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, dict(error.headers), json.loads(raw) if raw else None

    def password_token(
        self, user: str, password: str, project: str, *, domain: str = "Default"
    ) -> str:
        """A project-scoped token, as `openstack token issue` would get it."""
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"name": domain}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"name": domain}}},
        }
        status, headers, body = self.call("POST", "/v3/auth/tokens", {"auth": auth})
        assert status == 201, body
        return headers["X-Subject-Token"]

    def unscoped_token(self, user: str, password: str) -> str:
        auth = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"name": "Default"}, "password": password}
                },
            }
        }
        status, headers, body = self.call("POST", "/v3/auth/tokens", {"auth": auth})
        assert status == 201, body
        return headers["X-Subject-Token"]

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.password_token("admin", ADMIN_PASSWORD, "admin")
        return self._admin_token

    def revoke(self, token: str) -> None:
        """As `openstack token revoke` does."""
        status, _, body = self.call(
            "DELETE",
            "/v3/auth/tokens",
            token=self.admin_token(),
            headers={"X-Subject-Token": token},
        )
        assert status == 204, body

    def _create(self, collection: str, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        status, _, reply = self.call(
            "POST", f"/v3/{collection}", {entity: body}, token=self.admin_token()
        )
        assert status == 201, reply
        return dict(reply[entity])

    def role_id(self, name: str) -> str:
        status, _, reply = self.call("GET", f"/v3/roles?name={name}", token=self.admin_token())
        assert status == 200, reply
        assert reply["roles"], f"no role {name}"
        return str(reply["roles"][0]["id"])

    def create_project(self, name: str | None = None) -> dict[str, Any]:
        return self._create(
            "projects",
            "project",
            {"name": name or f"p-{uuid.uuid4().hex[:8]}", "domain_id": "default"},
        )

    def create_user(self, project: dict[str, Any], roles: tuple[str, ...]) -> User:
        """A user with these roles on the project, made through Keystone's API."""
        password = uuid.uuid4().hex
        user = self._create(
            "users",
            "user",
            {"name": f"u-{uuid.uuid4().hex[:8]}", "password": password, "domain_id": "default"},
        )
        for role in roles:
            path = f"/v3/projects/{project['id']}/users/{user['id']}/roles/{self.role_id(role)}"
            status, _, reply = self.call("PUT", path, token=self.admin_token())
            assert status == 204, reply
        return User(user["id"], user["name"], password, project["id"], project["name"])

    def token_of(self, user: User) -> str:
        return self.password_token(user.name, user.password, user.project_name)

    # --- its process ---

    def start_sibling(self, port: int, token_expiration: int) -> Keystone:
        """Another Keystone on the same database and keys, whose tokens live
        ``token_expiration`` seconds: a service token that expires in a test."""
        directory = self.directory / f"sibling-{port}"
        directory.mkdir()
        conf = KEYSTONE_CONF.format(dir=self.directory)
        assert "expiration = 3600" in conf
        conf = conf.replace("expiration = 3600", f"expiration = {token_expiration}")
        (directory / "keystone.conf").write_text(conf)
        (directory / "keystone_wsgi.py").write_text(WSGI_MODULE)
        sibling = Keystone(f"http://127.0.0.1:{port}", directory, port)
        sibling.start()
        return sibling

    def start(self) -> None:
        gunicorn = _binary("gunicorn")
        env = {**os.environ, "OS_KEYSTONE_CONFIG_DIR": str(self.directory)}
        with (self.directory / "gunicorn.log").open("ab") as output:
            self.process = subprocess.Popen(
                [
                    gunicorn,
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                    "--threads",
                    "1",
                    "--pythonpath",
                    str(self.directory),
                    "--access-logfile",
                    str(self.access_log),
                    "keystone_wsgi:application",
                ],
                cwd=self.directory,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_answering("Keystone", f"{self.url}/v3", self.process, self.directory / "gunicorn.log")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _binary(name: str) -> Path:
    path = KEYSTONE_VENV / "bin" / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run scripts/test, which installs Keystone in {KEYSTONE_VENV}"
        )
    return path


def run_keystone(directory: Path, port: int) -> Generator[Keystone]:
    manage = _binary("keystone-manage")
    url = f"http://127.0.0.1:{port}"
    (directory / "keystone.conf").write_text(KEYSTONE_CONF.format(dir=directory))
    (directory / "keystone_wsgi.py").write_text(WSGI_MODULE)
    conf = ["--config-file", str(directory / "keystone.conf")]
    owner = [
        "--keystone-user",
        getpass.getuser(),
        "--keystone-group",
        grp.getgrgid(os.getgid()).gr_name,
    ]
    steps = [
        ["db_sync"],
        ["fernet_setup", *owner],
        ["credential_setup", *owner],
        [
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-admin-url",
            url,
            "--bootstrap-internal-url",
            url,
            "--bootstrap-public-url",
            url,
            "--bootstrap-region-id",
            "RegionOne",
        ],
    ]
    for step in steps:
        done = subprocess.run([manage, *conf, *step], capture_output=True, cwd=directory)
        if done.returncode != 0:
            pytest.fail(f"keystone-manage {step[0]} failed:\n{done.stderr.decode()[-3000:]}")
    keystone = Keystone(url, directory, port)
    keystone.start()
    try:
        yield keystone
    finally:
        keystone.stop()


def keystone_section(keystone: Keystone, service_user: User, **overrides: Any) -> dict[str, Any]:
    """The gateway's ``auth.keystone`` section for this Keystone and service user."""
    section: dict[str, Any] = {
        "auth_url": f"{keystone.url}/v3",
        "password": {
            "username": service_user.name,
            "password": service_user.password,
            "project_name": service_user.project_name,
        },
        "timeout": 5,
    }
    section.update(overrides)
    return section
