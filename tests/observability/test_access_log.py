"""One structured access line per request, and never the token in it."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web

from gateway.demo_backend.image_store import add_image
from gateway.observability.logs import JsonFormatter
from tests.conftest import TokenFactory
from tests.observed import Observed, ObservedFactory, delete_new_image
from tests.test_app import delete


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """Each access record as the JSON log line a shipper would read."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "gateway.access"
    ]


@pytest.fixture
async def observed(observe_standin: ObservedFactory, caplog: pytest.LogCaptureFixture) -> Observed:
    caplog.set_level(logging.INFO, logger="gateway.access")
    return await observe_standin()


async def test_one_json_access_line_per_request_with_the_outcome(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = add_image(store_app, owner="project-a")
    tok = token(project="project-a", user="alice")
    deleted = await delete(observed.gateway, image.id, tok)
    refused = await delete(observed.gateway, image.id, tok)
    assert (deleted.status, refused.status) == (204, 404)

    first, second = access_lines(caplog)
    assert first["request_id"] == deleted.headers["X-OpenStack-Request-Id"]
    assert second["request_id"] == refused.headers["X-OpenStack-Request-Id"]
    assert (first["level"], first["logger"]) == ("INFO", "gateway.access")
    assert str(first["time"]).endswith("+00:00")
    for name, value in {
        "method": "DELETE",
        "route": "delete_image",
        "image_id": image.id,
        "project": "project-a",
        "user": "alice",
        "status": 204,
        "decision": "forwarded",
        "upstream_status": 204,
        "limiter": "allowed",
    }.items():
        assert first[name] == value, name
    assert 0 < float(str(first["upstream_ms"])) <= float(str(first["duration_ms"]))
    # The owner look-up found no such image: the gateway refused it itself.
    assert (second["status"], second["decision"], second["upstream_status"]) == (
        404,
        "denied",
        None,
    )
    assert second["reason"] == f"No image found with ID {image.id}."


async def test_the_token_never_reaches_the_log(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    image = add_image(store_app, owner="project-a")
    good, expired = token(), token(ttl=-60)
    assert (await delete(observed.gateway, image.id, expired)).status == 401
    response = await observed.gateway.delete(
        f"/v2/images/{image.id}", headers={"Authorization": f"Bearer {good}"}
    )
    assert response.status == 204
    lines = access_lines(caplog)
    assert [line["decision"] for line in lines] == ["unauthenticated", "forwarded"]
    everything = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for secret in (good, expired, good.split(".")[2]):
        assert secret not in everything


async def test_a_refused_request_says_why(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = token(roles=["cloudImages:observer"])
    assert (await delete_new_image(observed, store_app, observer)).status == 403
    (line,) = access_lines(caplog)
    assert (line["status"], line["decision"]) == (403, "denied")
    assert line["reason"] == "Policy does not allow this operation."
    assert (line["upstream_status"], line["upstream_ms"]) == (None, None)
