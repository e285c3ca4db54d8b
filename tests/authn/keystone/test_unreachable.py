"""A gateway whose Keystone does not answer starts, says so, and answers 503."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.demo_backend.image_store import add_image
from tests.support.faults import assert_fault
from tests.support.gateway_app import GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.observed import ObservedFactory
from tests.support.ports import free_port
from tests.support.scripted_keystone import ScriptedKeystone, serve_keystone, token_body
from tests.support.tokens import Keys, TokenFactory


@pytest.mark.parametrize("required", [False, True])
async def test_keystone_down_at_start_is_degraded_and_503_never_401(
    make_observed: ObservedFactory,
    store_server: TestServer,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    required: bool,
) -> None:
    """Ready but degraded (JWTs and cached tokens still serve; every replica
    shares the Keystone), or unready when admin.readiness.required names it."""
    nobody = f"http://127.0.0.1:{free_port()}/v3"
    keystone = {
        "auth_url": nobody,
        "application_credential": {"id": "gateway", "secret": "s"},
        "connect_timeout": 0.5,
        "timeout": 1,
    }
    observed = await make_observed(
        str(store_server.make_url("")).rstrip("/"),
        auth={"keystone": keystone},
        admin={"readiness": {"required": ["keystone"] if required else []}},
    )
    assert "no service token at start" in caplog.text
    ready = await observed.admin.get("/readyz")
    body = await ready.json()
    assert (ready.status, body["status"]) == ((503, "unready") if required else (200, "degraded"))
    check = body["checks"]["keystone"]
    assert check["ok"] is False
    assert check["status"] == ("failed" if required else "degraded")
    assert check["detail"].startswith("no service token")

    response = await observed.gateway.delete(
        f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": "gAAAAABtoken"}
    )
    await assert_fault(response, 503, "serviceUnavailable")
    # JWTs do not need Keystone: they go on working.
    response = await observed.gateway.delete(
        f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token()}
    )
    await assert_fault(response, 404, "itemNotFound")


async def test_a_keystone_outage_is_logged_as_it_begins_and_as_it_ends(
    make_gateway: GatewayFactory,
    store_app: web.Application,
    store_server: TestServer,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.keystone")
    port = free_port()  # Keystone is not there yet
    scripted = ScriptedKeystone(url=f"http://127.0.0.1:{port}")
    scripted.valid["gAAAAABcaller"] = token_body(
        "project-a", "alice", ["cloudImages:admin"], time.time() + 3600
    )
    keystone = scripted.section(timeout=1, connect_timeout=0.5)
    auth = {**config_data("", keys)["auth"], "keystone": keystone}
    gateway = await make_gateway(str(store_server.make_url("")).rstrip("/"), auth=auth)
    headers = {"X-Auth-Token": "gAAAAABcaller"}
    for _ in range(3):
        response = await gateway.delete(f"/v2/images/{uuid.uuid4()}", headers=headers)
        await assert_fault(response, 503, "serviceUnavailable")
    server = await serve_keystone(scripted, port)
    try:
        image = add_image(store_app, owner="project-a")
        assert (await gateway.delete(f"/v2/images/{image.id}", headers=headers)).status == 204
    finally:
        await server.close()

    lines = [r.getMessage() for r in caplog.records if "keystone " in r.getMessage()]
    outage = [line for line in lines if "unavailable" in line or "recovered" in line]
    assert len(outage) == 2, lines
    assert outage[0].startswith("keystone unavailable: ")
    assert outage[1].startswith("keystone recovered after ")
    assert outage[1].endswith("s down, 3 failure(s)")
