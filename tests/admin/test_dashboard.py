"""The dashboard's pages, live fragments and JSON API, after real traffic."""

from __future__ import annotations

import logging
import re

import pytest
from aiohttp import web

from gateway.demo_backend.image_store import add_image
from tests.support.faults import delete
from tests.support.observed import Observed, ObservedFactory, delete_new_image
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ImageDataBackend

TIGHT = [{"name": "tight", "path": "^/(v2/)?images/", "unit": "minute", "value": 2}]


@pytest.fixture
async def observed(observe_standin: ObservedFactory) -> Observed:
    return await observe_standin(rate_limit={"rules": TIGHT})


async def test_decisions_are_searchable_by_request_id_project_and_image(
    observed: Observed, store_app: web.Application, token: TokenFactory
) -> None:
    a = add_image(store_app, owner="project-a")
    b = add_image(store_app, owner="project-b")
    first = await delete(observed.gateway, a.id, token(project="project-a"))
    second = await delete(observed.gateway, b.id, token(project="project-b", user="bob"))
    assert (first.status, second.status) == (204, 204)
    first_id = first.headers["X-OpenStack-Request-Id"]

    everything = (await observed.api("/api/decisions"))["decisions"]
    assert [d["image_id"] for d in everything] == [b.id, a.id]  # newest first
    by_id = (await observed.api(f"/api/decisions?q={first_id}"))["decisions"]
    assert [d["request_id"] for d in by_id] == [first_id]
    by_project = (await observed.api("/api/decisions?q=project-b"))["decisions"]
    assert [d["user"] for d in by_project] == ["bob"]
    by_image = (await observed.api(f"/api/decisions?q={b.id[:13].upper()}"))["decisions"]
    assert [d["project"] for d in by_image] == ["project-b"]
    assert (await observed.api("/api/decisions?q=nobody"))["decisions"] == []
    assert len((await observed.api("/api/decisions?limit=1"))["decisions"]) == 1


async def test_limit_state_per_tenant_shows_usage_against_the_limit(
    observed: Observed, store_app: web.Application, token: TokenFactory
) -> None:
    statuses = []
    for _ in range(3):
        image = add_image(store_app, owner="project-a")
        statuses.append((await delete(observed.gateway, image.id, token())).status)
    image = add_image(store_app, owner="project-b")
    statuses.append((await delete(observed.gateway, image.id, token(project="project-b"))).status)
    assert statuses == [204, 204, 413, 204]

    rows = {r["subject"]: r for r in (await observed.api("/api/limits"))["limits"]}
    a, b = rows["project:project-a"], rows["project:project-b"]
    assert (a["rule"], a["limit"], a["period"]) == ("tight", 2, 60)
    assert (a["used"], a["remaining"], a["limited_count"]) == (2, 0, 1)
    assert a["limited_now"] is True
    assert 0 < a["full_in"] <= 60
    assert (b["used"], b["remaining"], b["limited_count"]) == (1, 1, 0)
    # The tenant closest to its limit comes first; a search narrows them.
    assert [r["subject"] for r in (await observed.api("/api/limits"))["limits"]] == [
        "project:project-a",
        "project:project-b",
    ]
    found = (await observed.api("/api/limits?q=PROJECT-B"))["limits"]
    assert [r["subject"] for r in found] == ["project:project-b"]
    assert len((await observed.api("/api/limits?limit=1"))["limits"]) == 1


async def test_overview_has_rate_status_mix_latency_and_health(
    observed: Observed, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    assert (await delete(observed.gateway, image.id, token())).status == 204
    assert (await delete(observed.gateway, image.id, None)).status == 401
    assert (await delete(observed.gateway, image.id, token())).status == 404
    body = await observed.api("/api/overview")
    overview = body["overview"]
    assert overview["requests"] == 3
    assert overview["rate_per_second"] == round(3 / 60, 3)
    assert overview["status_mix"] == {"2xx": 1, "4xx": 2}
    assert overview["decision_mix"] == {"denied": 1, "forwarded": 1, "unauthenticated": 1}
    assert 0 < overview["p50_ms"] <= overview["p99_ms"]
    assert body["health"]["checks"]["upstream"]["ok"] is True
    assert [d["status"] for d in body["recent"]] == [404, 401, 204]


async def test_pages_render_the_data_and_serve_their_own_assets(
    observed: Observed, store_app: web.Application, token: TokenFactory
) -> None:
    response = await delete_new_image(observed, store_app, token())
    request_id = response.headers["X-OpenStack-Request-Id"]
    for path, expected in [
        ("/", request_id),
        ("/limits", "project:project-a"),
        (f"/decisions?q={request_id}", request_id),
        ("/audit", request_id),
    ]:
        page = await observed.admin.get(path)
        assert page.status == 200
        assert page.content_type == "text/html"
        html = await page.text()
        assert expected in html, path
        # No CDN: every script and stylesheet is the gateway's own.
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), path
        for asset in re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", html):
            served = await observed.admin.get(asset)
            assert served.status == 200, asset
    for name in ("dashboard.js", "dashboard.css"):
        assert (await observed.admin.get(f"/static/{name}")).status == 200


async def test_live_regions_are_served_as_fragments(
    observed: Observed, store_app: web.Application, token: TokenFactory
) -> None:
    response = await delete_new_image(observed, store_app, token())
    request_id = response.headers["X-OpenStack-Request-Id"]
    fragment = await observed.admin.get("/decisions?partial=decisions&q=project-a")
    assert fragment.status == 200
    html = await fragment.text()
    assert request_id in html
    assert "<html" not in html
    other = await (await observed.admin.get("/decisions?partial=decisions&q=zzz")).text()
    assert request_id not in other


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/decisions?limit=abc", "limit must be a whole number"),
        ("/api/decisions?limit=0", "limit must be a whole number"),
        ("/api/audit?limit=501", "limit must be a whole number"),
        ("/api/limits?limit=-1", "limit must be a whole number"),
        (f"/api/decisions?q={'x' * 201}", "q is longer than 200"),
        ("/decisions?partial=../base", "partial must be one of: decisions"),
        ("/limits?partial=decisions", "partial must be one of: limits"),
    ],
)
async def test_bad_dashboard_input_is_a_400_fault_logged_and_harmless(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    path: str,
    message: str,
) -> None:
    image = add_image(store_app, owner="project-a")
    assert (await delete(observed.gateway, image.id, token())).status == 204
    before = await observed.api("/api/decisions")
    caplog.set_level(logging.INFO, logger="gateway.http.faults")
    response = await observed.admin.get(path)
    assert response.status == 400
    body = await response.json()
    assert body["badRequest"]["code"] == 400
    assert message in body["badRequest"]["message"]
    assert any(message in r.getMessage() for r in caplog.records)
    assert await observed.api("/api/decisions") == before


async def test_unknown_admin_path_is_a_404_fault(observed: Observed) -> None:
    response = await observed.admin.get("/nope")
    assert response.status == 404
    assert list(await response.json()) == ["itemNotFound"]


async def test_byte_rules_show_their_usage_in_bytes(
    make_observed: ObservedFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
) -> None:
    rule = {"name": "upload-bytes", "count": "bytes", "unit": "hour", "value": "1MiB"}
    observed = await make_observed(image_backend[1], rate_limit={"rules": [rule]})
    tok = token(roles=["admin"])
    headers = {"X-Auth-Token": tok, "Content-Type": "application/octet-stream"}
    path = "/v2/images/6b0d5a3e-9d55-4f1b-8f57-0f0b5d0a2c11/file"
    assert (
        await observed.gateway.put(path, data=b"x" * (600 << 10), headers=headers)
    ).status == 204
    refused = await observed.gateway.put(path, data=b"x" * (600 << 10), headers=headers)
    assert refused.status == 413
    (row,) = (await observed.api("/api/limits"))["limits"]
    assert row["counts"] == "bytes"
    assert (row["used"], row["limit"]) == (600 << 10, 1 << 20)
    # Refused with 424 KiB left: limited all the same.
    assert (row["limited_count"], row["limited_now"]) == (1, True)
    page = await observed.admin.get("/limits")
    html = await page.text()
    assert "600.0 KiB / 1.0 MiB" in html
    assert 'data-counts="bytes"' in html
    assert "424.0 KiB" in html
