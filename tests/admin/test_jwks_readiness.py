"""A gateway whose only keys come from a JWKS: /readyz and /metrics say whether
the key set loaded."""

from __future__ import annotations

from typing import Any

import pytest

from tests.authn.test_jwks import ISSUER, serving
from tests.support.observed import ObservedFactory


def jwks_only(url: str) -> dict[str, Any]:
    issuer = {"issuer": ISSUER, "audience": "image-api", "jwks": {"url": url}}
    return {"keys": [], "issuer": None, "audience": None, "issuers": [issuer]}


@pytest.mark.parametrize("failing", [False, True], ids=["key server up", "key server down"])
async def test_keys_check_and_fetch_metric_follow_the_key_set(
    observe_standin: ObservedFactory, failing: bool
) -> None:
    async with serving("k1") as key_server:
        key_server.failing = failing
        observed = await observe_standin(auth=jwks_only(key_server.url))
        response = await observed.admin.get("/readyz")
        body = await response.json()
        keys = body["checks"]["keys"]
        assert keys["ok"] is not failing
        assert keys["detail"] == f"{0 if failing else 1} verification key(s) loaded"
        assert response.status == (503 if failing else 200)
        # Mirrored counts are published as each request finishes.
        await observed.gateway.get("/")
        outcome = "error" if failing else "ok"
        assert await observed.sample("gateway_jwks_fetches_total", outcome=outcome) == 1
        assert key_server.fetches == 1
