"""A Keystone v3 on a real socket that answers as the tests script it.

Real Keystone runs in tests/integration (a minute to set up); the
validator's own tests, the tracing tests and the outage tests need only its
token API, and to hold an answer back or count the validations of one token
exactly: POST /v3/auth/tokens issues the gateway's service token, GET
validates a subject token it was told about (200 with its body) and answers
404 for any other.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import KeystoneConfig

SERVICE_TOKEN = "service-token-0"


def token_body(project: str, user: str, roles: list[str], expires_at: float) -> dict[str, Any]:
    """A project-scoped token as Keystone v3 returns it."""
    domain = {"id": "default", "name": "Default"}

    def moment(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).isoformat()

    return {
        "token": {
            "user": {"id": user, "name": user, "domain": domain},
            "project": {"id": project, "name": project, "domain": domain},
            "roles": [{"id": f"r-{r}", "name": r} for r in roles],
            "expires_at": moment(expires_at),
            "issued_at": moment(expires_at - 3600),
            "audit_ids": ["audit-1"],
            "methods": ["password"],
        }
    }


@dataclass
class ScriptedKeystone:
    url: str = ""
    # Subject token -> the body GET /v3/auth/tokens answers for it.
    valid: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How many times each subject token was validated.
    validations: Counter[str] = field(default_factory=Counter)
    # How many service tokens were issued, and for how long each is valid.
    issued: int = 0
    service_token_life: float = 3600
    # Cleared to hold every validation's answer back until set.
    answer: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.answer.set()

    def section(self, **settings: Any) -> dict[str, Any]:
        """``auth.keystone`` for this Keystone, validating at ``auth_url`` itself."""
        return {
            "auth_url": self.url,
            "application_credential": {"id": "gateway", "secret": "s"},
            "interface": None,
            "timeout": 2,
            **settings,
        }

    def config(self, **settings: Any) -> KeystoneConfig:
        return KeystoneConfig.model_validate(self.section(**settings))

    async def issue(self, request: web.Request) -> web.Response:
        self.issued += 1
        expires_at = datetime.now(UTC).timestamp() + self.service_token_life
        body = token_body("service", "gateway", ["service"], expires_at)
        return web.json_response(body, status=201, headers={"X-Subject-Token": SERVICE_TOKEN})

    async def validate(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Auth-Token") != SERVICE_TOKEN:
            return web.json_response({"error": {"code": 401}}, status=401)
        subject = request.headers.get("X-Subject-Token", "")
        self.validations[subject] += 1
        await self.answer.wait()
        if subject not in self.valid:
            return web.json_response({"error": {"code": 404}}, status=404)
        return web.json_response(self.valid[subject])


async def serve_keystone(scripted: ScriptedKeystone, port: int | None = None) -> TestServer:
    """``scripted`` on ``port`` (a free one when None); its ``url`` set to the server's."""
    app = web.Application()
    app.router.add_post("/v3/auth/tokens", scripted.issue)
    app.router.add_get("/v3/auth/tokens", scripted.validate)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    scripted.url = str(server.make_url("")).rstrip("/")
    return server
