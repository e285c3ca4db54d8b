"""The optional admin token: machines by Bearer header, browsers by cookie."""

from __future__ import annotations

import logging

import pytest

from gateway.http.request_ids import GLOBAL_REQUEST_ID
from tests.support.observed import Observed, ObservedFactory

ADMIN_TOKEN = "operator-secret-0123456789"


@pytest.fixture
async def guarded(observe_standin: ObservedFactory) -> Observed:
    return await observe_standin(admin={"token": ADMIN_TOKEN})


@pytest.mark.parametrize("path", ["/metrics", "/", "/api/decisions", "/audit"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": ADMIN_TOKEN}],
    ids=["none", "wrong", "not-bearer"],
)
async def test_without_the_token_everything_but_probes_is_401(
    guarded: Observed,
    caplog: pytest.LogCaptureFixture,
    path: str,
    headers: dict[str, str],
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.admin")
    response = await guarded.admin.get(path, headers=headers)
    assert response.status == 401
    body = await response.json()
    assert body["unauthorized"]["code"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # The admin listener's faults carry their request id, as the gateway's do,
    # and the log line of the refusal names it.
    request_id = response.headers["X-OpenStack-Request-Id"]
    assert GLOBAL_REQUEST_ID.match(request_id)
    assert response.headers["X-Compute-Request-Id"] == request_id
    refusals = [r for r in caplog.records if "admin request refused" in r.getMessage()]
    assert [getattr(r, "request_id", None) for r in refusals] == [request_id]
    assert ADMIN_TOKEN not in caplog.text


async def test_probes_need_no_token_and_the_bearer_token_opens_the_rest(
    guarded: Observed,
) -> None:
    assert (await guarded.admin.get("/healthz")).status == 200
    assert (await guarded.admin.get("/readyz")).status == 200
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in ("/metrics", "/", "/limits", "/api/overview"):
        assert (await guarded.admin.get(path, headers=bearer)).status == 200, path


async def test_a_browser_trades_the_query_token_for_a_cookie(guarded: Observed) -> None:
    response = await guarded.admin.get(
        f"/decisions?q=abc&token={ADMIN_TOKEN}", allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == "/decisions?q=abc"
    cookie = response.cookies["igw_admin"]
    assert cookie.value == ADMIN_TOKEN
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    page = await guarded.admin.get("/decisions?q=abc", cookies={"igw_admin": ADMIN_TOKEN})
    assert page.status == 200


async def test_a_wrong_query_token_sets_no_cookie(guarded: Observed) -> None:
    response = await guarded.admin.get("/?token=wrong-token-0123456789", allow_redirects=False)
    assert response.status == 401
    assert "igw_admin" not in response.cookies
