"""The dashboard in a real browser: Debian's chromium, driven by Playwright.

The page is opened first; then the test makes a delete and a 413 through
the gateway and waits for both to appear without a reload, searches by
request id, and screenshots each page: into docs/ (the pictures in docs/operations.md)
when UPDATE_SCREENSHOTS=1, else into a temporary directory so that a test
run leaves the work tree clean. A missing chromium is a failure (the
launch raises), never a skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from gateway.demo_backend.image_store import add_image
from tests.support.faults import delete
from tests.support.observed import Observed, ObservedFactory, delete_new_image
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ImageDataBackend

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
WAIT_MS = 10_000
RULES = [
    {
        "name": "project-deletes",
        "path": "^/(v2/)?images/",
        "methods": ["DELETE"],
        "unit": "minute",
        "value": 3,
        "by": "project",
    },
    {
        "name": "user-deletes",
        "path": "^/(v2/)?images/",
        "methods": ["DELETE"],
        "unit": "hour",
        "value": 20,
        "by": "user",
    },
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    yield await context.new_page()
    await context.close()


@pytest.fixture
async def observed(observe_standin: ObservedFactory) -> Observed:
    return await observe_standin(rate_limit={"rules": RULES}, admin={"refresh_seconds": 0.2})


async def seed_traffic(observed: Observed, store_app: web.Application, token: TokenFactory) -> None:
    """A little of everything, so each page has something to show."""
    assert (await delete_new_image(observed, store_app, token(user="alice"))).status == 204
    observer = token(user="olivia", roles=["cloudImages:observer"])
    assert (await delete_new_image(observed, store_app, observer)).status == 403
    bob = token(project="project-b", user="bob")
    assert (await delete_new_image(observed, store_app, bob, owner="project-b")).status == 204
    assert (await delete_new_image(observed, store_app, bob, owner="project-a")).status == 404
    assert (await delete_new_image(observed, store_app, None)).status == 401
    root = token(project="operations", user="root", roles=["admin"])
    assert (await delete_new_image(observed, store_app, root, owner="project-c")).status == 204


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return DOCS if UPDATE_SCREENSHOTS else tmp_path


async def shot(page: Page, directory: Path, name: str) -> None:
    path = directory / f"dashboard-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, "a blank page would be a few hundred bytes"


async def test_dashboard_shows_a_delete_and_a_413_live_and_finds_them_by_request_id(
    observed: Observed,
    store_app: web.Application,
    token: TokenFactory,
    page: Page,
    shots: Path,
) -> None:
    await seed_traffic(observed, store_app, token)
    base = str(observed.admin.make_url("")).rstrip("/")
    await page.goto(f"{base}/")
    await page.evaluate("window.loadedOnce = true")

    alice = token(user="alice")
    image = add_image(store_app, owner="project-a")
    deleted = await delete(observed.gateway, image.id, alice)
    limited = await delete_new_image(observed, store_app, alice)
    assert (deleted.status, limited.status) == (204, 413)
    deleted_id = deleted.headers["X-OpenStack-Request-Id"]
    limited_id = limited.headers["X-OpenStack-Request-Id"]

    # Both appear on the open overview without a reload.
    for request_id in (deleted_id, limited_id):
        await page.wait_for_selector(f'tr[data-request-id="{request_id}"]', timeout=WAIT_MS)
    assert await page.evaluate("window.loadedOnce") is True
    row = page.locator(f'tr[data-request-id="{limited_id}"]')
    assert "413" in await row.inner_text()
    assert "limited" in await row.inner_text()
    await shot(page, shots, "overview")

    await page.goto(f"{base}/decisions")
    await page.wait_for_selector(f'tr[data-request-id="{limited_id}"]', timeout=WAIT_MS)
    await shot(page, shots, "decisions")
    await page.fill("input[name=q]", limited_id)
    await page.wait_for_function(
        """id => {
            const rows = document.querySelectorAll("[data-live] tbody tr[data-request-id]");
            return rows.length === 1 && rows[0].dataset.requestId === id;
        }""",
        arg=limited_id,
        timeout=WAIT_MS,
    )
    assert f"q={limited_id}" in page.url

    await page.goto(f"{base}/limits")
    tenant = page.locator('tr[data-subject="project:project-a"]').first
    await tenant.wait_for(timeout=WAIT_MS)
    assert "3 / 3" in await tenant.inner_text()
    await shot(page, shots, "limits")

    await page.goto(f"{base}/audit")
    await page.wait_for_selector(f'tr[data-request-id="{deleted_id}"]', timeout=WAIT_MS)
    audit_row = await page.locator(f'tr[data-request-id="{deleted_id}"]').inner_text()
    assert "deleted" in audit_row
    assert image.id in audit_row
    assert "limited" in await page.locator(f'tr[data-request-id="{limited_id}"]').inner_text()
    await shot(page, shots, "audit")


async def test_the_limits_page_shows_a_byte_budget_filling_live(
    make_observed: ObservedFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    page: Page,
    shots: Path,
) -> None:
    budget = {"name": "upload-bytes", "count": "bytes", "unit": "day", "value": "1MiB"}
    observed = await make_observed(
        image_backend[1], rate_limit={"rules": [budget]}, admin={"refresh_seconds": 0.2}
    )
    base = str(observed.admin.make_url("")).rstrip("/")
    await page.goto(f"{base}/limits")
    await page.evaluate("window.loadedOnce = true")
    headers = {
        "X-Auth-Token": token(roles=["admin"]),
        "Content-Type": "application/octet-stream",
    }
    path = "/v2/images/6b0d5a3e-9d55-4f1b-8f57-0f0b5d0a2c11/file"
    uploaded = await observed.gateway.put(path, data=b"x" * (768 << 10), headers=headers)
    assert uploaded.status == 204
    row = page.locator('tr[data-counts="bytes"][data-subject="project:project-a"]')
    await row.wait_for(timeout=WAIT_MS)
    assert await page.evaluate("window.loadedOnce") is True
    text = await row.inner_text()
    assert "768.0 KiB / 1.0 MiB" in text
    assert "256.0 KiB" in text
    assert "of image data" in text
    meter = row.locator("[role=meter]")
    assert await meter.get_attribute("aria-valuenow") == str(768 << 10)
    await shot(page, shots, "limits-bytes")
