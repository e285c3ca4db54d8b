"""A Keystone v3 stand-in on a real socket: the two calls the gateway makes (its
own token, and validating a caller's), for tests that need Keystone to answer,
or to stop answering and come back, without the real one's start-up
(tests/integration runs the real Keystone)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

CALLER_TOKEN = "gAAAAABcaller-token"


def keystone_token(user: str, project: str, roles: list[str]) -> dict[str, Any]:
    return {
        "token": {
            "expires_at": "2099-01-01T00:00:00.000000Z",
            "issued_at": "2026-01-01T00:00:00.000000Z",
            "audit_ids": ["audit-1"],
            "user": {"id": user, "name": user, "domain": {"id": "default", "name": "Default"}},
            "project": {"id": project, "name": project, "domain": {"id": "default"}},
            "roles": [{"id": r, "name": r} for r in roles],
        }
    }


async def _tokens(request: web.Request) -> web.Response:
    if request.method == "POST":
        body = keystone_token("gateway", "service", ["service"])
        return web.json_response(body, status=201, headers={"X-Subject-Token": "service-token"})
    if request.headers.get("X-Subject-Token") != CALLER_TOKEN:
        return web.json_response({"error": {"code": 404}}, status=404)
    # The caller: alice of project-a, allowed to delete its images.
    return web.json_response(keystone_token("alice", "project-a", ["cloudImages:admin"]))


def keystone_section(url: str) -> dict[str, Any]:
    """auth.keystone for a stand-in at ``url``, validating at auth_url itself."""
    return {"auth_url": url, "interface": None, "timeout": 1, "connect_timeout": 0.5,
            "application_credential": {"id": "gateway", "secret": "s"}}  # fmt: skip


async def start_keystone(port: int | None = None) -> tuple[TestServer, str]:
    """The stand-in on ``port`` (a free one when None); its /v3 URL."""
    app = web.Application()
    app.router.add_route("*", "/v3/auth/tokens", _tokens)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server, str(server.make_url("/v3"))
