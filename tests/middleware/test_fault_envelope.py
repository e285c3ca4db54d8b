"""An internal error becomes a 500 apiFault: logged with its traceback and
request id, and nothing of it reaches the client."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from aiohttp.test_utils import TestServer

from gateway.ratelimit.store import Check, Verdict
from tests.conftest import GatewayFactory, TokenFactory
from tests.test_app import assert_fault


class BrokenStore:
    """A store with a bug in it, plugged in through the store interface."""

    async def acquire(self, checks: Sequence[Check]) -> Verdict:
        raise ZeroDivisionError("secret internal detail")

    async def peek(self, checks: Sequence[Check]) -> Verdict:
        raise ZeroDivisionError("secret internal detail")

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_internal_error_is_500_api_fault(
    make_gateway: GatewayFactory,
    store_server: TestServer,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_gateway(str(store_server.make_url("")).rstrip("/"), store=BrokenStore())
    with caplog.at_level(logging.ERROR, logger="gateway.http.faults"):
        response = await client.delete(
            "/v2/images/8b5e1f8e-9d1c-4a5c-9f0e-3d0f6f1f2a3b", headers={"X-Auth-Token": token()}
        )
    body = await assert_fault(response, 500, "apiFault")
    text = await response.text()
    assert "secret internal detail" not in text
    assert "Traceback" not in text
    request_id = response.headers["X-Compute-Request-Id"]
    assert request_id in body["details"]
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError
