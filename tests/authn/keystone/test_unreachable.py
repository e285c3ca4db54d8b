"""A gateway whose Keystone does not answer starts, says so, and answers 503."""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestServer

from tests.support.faults import assert_fault
from tests.support.observed import ObservedFactory
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory


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
