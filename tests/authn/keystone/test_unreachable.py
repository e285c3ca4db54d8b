"""A gateway whose Keystone does not answer starts, says so, and answers 503."""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestServer

from tests.support.faults import assert_fault
from tests.support.observed import ObservedFactory
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory


async def test_keystone_down_at_start_is_not_ready_and_503_never_401(
    make_observed: ObservedFactory,
    store_server: TestServer,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/v3"
    keystone = {
        "auth_url": nobody,
        "application_credential": {"id": "gateway", "secret": "s"},
        "connect_timeout": 0.5,
        "timeout": 1,
    }
    observed = await make_observed(
        str(store_server.make_url("")).rstrip("/"), auth={"keystone": keystone}
    )
    assert "no service token at start" in caplog.text
    ready = await observed.admin.get("/readyz")
    assert ready.status == 503
    check = (await ready.json())["checks"]["keystone"]
    assert check["ok"] is False
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
