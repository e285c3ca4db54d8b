"""GET /limits: the caller's own limits, and they agree with what is enforced."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.handlers.limits import accepts_json
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ImageDataBackend, ScriptedUpstream

RULES = [
    {
        "name": "deletes",
        "path": "^/(v2/)?images/",
        "methods": ["DELETE"],
        "unit": "minute",
        "value": 3,
    },
    {"name": "per-ip", "path": "^/", "unit": "hour", "value": 50, "by": "ip"},
    {"name": "trial", "path": "^/", "unit": "second", "value": 1, "shadow": True},
]


@pytest.fixture
async def client(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    limiter_section: dict[str, Any],
) -> Client:
    return await make_gateway(scripted[1], rate_limit={**limiter_section, "rules": RULES})


async def _limits(client: Client, tok: str, **headers: str) -> dict[str, Any]:
    response = await client.get("/limits", headers={"X-Auth-Token": tok, **headers})
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


def _by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in body["limits"]["rate"]}


async def _delete(client: Client, tok: str) -> Any:
    return await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": tok})


async def test_limits_shape_and_agreement_with_headers_and_enforcement(
    client: Client, token: TokenFactory
) -> None:
    tok = token(roles=["admin"])
    body = await _limits(client, tok)
    assert body["limits"]["absolute"] == {}
    rates = _by_name(body)
    # Shadow rules are not the caller's limits: they never refuse.
    assert set(rates) == {"deletes", "per-ip"}
    assert rates["deletes"]["regex"] == "^/(v2/)?images/"
    [deletes] = rates["deletes"]["limit"]
    assert deletes["verb"] == "DELETE"
    assert deletes["unit"] == "MINUTE"
    assert (deletes["value"], deletes["remaining"]) == (3, 3)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", deletes["next-available"])
    assert rates["per-ip"]["limit"][0]["verb"] == "ALL"

    admitted = 0
    while True:
        before = _by_name(await _limits(client, tok))["deletes"]["limit"][0]["remaining"]
        response = await _delete(client, tok)
        if response.status != 204:
            break
        admitted += 1
        # The header reports the rule closest to running out: deletes.
        assert response.headers["RateLimit"].startswith(f'"deletes";r={before - 1};t=')
        assert response.headers["RateLimit-Policy"] == '"deletes";q=3;w=60, "per-ip";q=50;w=3600'
    # /limits said 3, the limiter admitted 3.
    assert admitted == 3
    fault = await assert_fault(response, 413, "overLimit")
    after = _by_name(await _limits(client, tok))["deletes"]["limit"][0]
    assert after["remaining"] == 0
    # next-available and retryAfter name the same moment, to the second.
    available = datetime.strptime(after["next-available"], "%Y-%m-%dT%H:%M:%SZ")
    retry_at = datetime.strptime(fault["retryAfter"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((available - retry_at).total_seconds()) <= 1
    assert available.replace(tzinfo=UTC) > datetime.now(UTC)


async def test_limits_is_not_counted_and_needs_a_token(client: Client, token: TokenFactory) -> None:
    tok = token()
    for _ in range(5):
        body = await _limits(client, tok)
    assert _by_name(body)["per-ip"]["limit"][0]["remaining"] == 50
    response = await client.get("/limits")
    await assert_fault(response, 401, "unauthorized")
    assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "application/*", "text/html, application/json;q=0.5"]
)
async def test_limits_serves_json_accepts(client: Client, token: TokenFactory, accept: str) -> None:
    await _limits(client, token(), Accept=accept)


@pytest.mark.parametrize(
    "accept", ["application/xml", "text/html", "application/json;q=0", "image/*"]
)
async def test_limits_refuses_other_accepts_with_406(
    client: Client, token: TokenFactory, accept: str, caplog: pytest.LogCaptureFixture
) -> None:
    tok = token(roles=["admin"])
    with caplog.at_level(logging.INFO, logger="gateway.http.faults"):
        response = await client.get("/limits", headers={"X-Auth-Token": tok, "Accept": accept})
    body = await assert_fault(response, 406, "notAcceptable")
    assert "application/json" in body["message"]
    assert any("406" in r.getMessage() for r in caplog.records)
    # Nothing was counted by the refused look.
    assert (await _delete(client, tok)).headers["RateLimit"].startswith('"deletes";r=2;')


def test_accepts_json_reads_quality_values() -> None:
    assert accepts_json(None)
    assert accepts_json("")
    assert accepts_json("APPLICATION/JSON")
    assert not accepts_json("application/json;q=0.0")
    assert not accepts_json("application/json;q=bogus")
    assert not accepts_json("text/plain")


async def test_other_methods_on_limits_are_405(client: Client, token: TokenFactory) -> None:
    response = await client.post("/limits", headers={"X-Auth-Token": token()})
    await assert_fault(response, 405, "badMethod")
    assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize(("failure_mode", "status"), [("open", 200), ("closed", 503)])
async def test_limits_with_redis_down_follows_the_failure_mode(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    failure_mode: str,
    status: int,
) -> None:
    dead = {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 0.2}
    client = await make_gateway(
        scripted[1],
        rate_limit={"store": "redis", "redis": dead, "rules": RULES, "failure_mode": failure_mode},
    )
    response = await client.get("/limits", headers={"X-Auth-Token": token()})
    assert response.status == status
    if status == 200:
        # This process's own count stands in for Redis's.
        assert _by_name(await response.json())["deletes"]["limit"][0]["remaining"] == 3
    else:
        await assert_fault(response, 503, "serviceUnavailable")


BYTE_RULES = [
    {"name": "uploads", "routes": ["upload_image"], "unit": "minute", "value": 10},
    {"name": "upload-bytes", "count": "bytes", "unit": "day", "value": "1MiB",
     "routes": ["upload_image", "stage"]},
    {"name": "download-bytes", "count": "bytes", "unit": "hour", "value": "2MiB",
     "routes": ["download_image"], "by": "user"},
    {"name": "trial-bytes", "count": "bytes", "unit": "hour", "value": "1KiB", "shadow": True},
]  # fmt: skip


async def test_limits_show_each_byte_rule_in_bytes_with_its_reset(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    client = await make_gateway(
        image_backend[1], rate_limit={**limiter_section, "rules": BYTE_RULES}
    )
    tok = token(roles=["admin"])
    rates = _by_name(await _limits(client, tok))
    # Shadow rules stay out, byte rules or not.
    assert set(rates) == {"uploads", "upload-bytes", "download-bytes"}
    assert rates["upload-bytes"]["routes"] == ["stage", "upload_image"]
    [upload] = rates["upload-bytes"]["limit"]
    assert upload["verb"] == "PUT"
    assert (upload["counts"], upload["unit"]) == ("bytes", "DAY")
    assert (upload["value"], upload["remaining"]) == (1 << 20, 1 << 20)
    assert "counts" not in rates["uploads"]["limit"][0]
    assert rates["download-bytes"]["limit"][0]["verb"] == "GET"

    response = await client.put(
        f"/v2/images/{uuid.uuid4()}/file",
        data=b"x" * (800 << 10),
        headers={"X-Auth-Token": tok, "Content-Type": "application/octet-stream"},
    )
    assert response.status == 204
    [upload] = _by_name(await _limits(client, tok))["upload-bytes"]["limit"]
    assert upload["remaining"] == (1 << 20) - (800 << 10)
    # Bytes remain: more may go now; the 800 KiB leave the window in a day.
    now = datetime.now(UTC)
    available = datetime.strptime(upload["next-available"], "%Y-%m-%dT%H:%M:%SZ")
    reset = datetime.strptime(upload["reset"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((available.replace(tzinfo=UTC) - now).total_seconds()) <= 2
    assert 86390 <= (reset.replace(tzinfo=UTC) - now).total_seconds() <= 86402
    # What /limits says remains is what the next upload meets.
    over = await client.put(
        f"/v2/images/{uuid.uuid4()}/file",
        data=b"x" * (upload["remaining"] + 1),
        headers={"X-Auth-Token": tok, "Content-Type": "application/octet-stream"},
    )
    await assert_fault(over, 413, "overLimit")
