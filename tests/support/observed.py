"""A gateway and its admin listener side by side, on real sockets.

Tests drive traffic through ``gateway`` and read what the operator sees
from ``admin``: /metrics, /readyz, the dashboard and its JSON API. The
fixtures that build them (``make_observed``, ``observe_standin``) are in
tests/conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse, web
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import GATEWAY, Gateway
from gateway.demo_backend.image_store import add_image
from gateway.observability.records import RecordFields, RequestRecord
from tests.support.gateway_app import Client


@dataclass
class Observed:
    gateway: Client
    admin: Client
    app: web.Application

    @property
    def state(self) -> Gateway:
        return self.app[GATEWAY]

    async def metrics(self) -> str:
        response = await self.admin.get("/metrics")
        assert response.status == 200
        return await response.text()

    async def sample(self, name: str, **labels: str) -> float:
        """One sample's value from /metrics; 0 when the series does not exist yet."""
        return sample_value(await self.metrics(), name, **labels)

    async def api(self, path: str) -> Any:
        response = await self.admin.get(path)
        assert response.status == 200, await response.text()
        return await response.json()


def sample_value(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# make_observed(upstream_url, *, store=None, **sections) -> Observed (tests/conftest.py)
ObservedFactory = Callable[..., Awaitable[Observed]]


async def delete_new_image(
    observed: Observed, store_app: web.Application, tok: str | None, owner: str = "project-a"
) -> ClientResponse:
    """Add an image to the stand-in store and DELETE it through the gateway."""
    image = add_image(store_app, owner=owner)
    return await observed.gateway.delete(
        f"/v2/images/{image.id}", headers={"X-Auth-Token": tok} if tok else {}
    )


def sample_record(request_id: str, route: str = "delete_image") -> RequestRecord:
    """A finished request's record, as the observability middleware builds it."""
    fields: RecordFields = {
        "global_request_id": None,
        "method": "DELETE",
        "path": "/v2/images/x",
        "route": route,
        "image_id": "x",
        "project": "p",
        "user": "u",
        "client": "127.0.0.1",
        "status": 204,
        "decision": "forwarded",
        "reason": None,
        "upstream_status": 204,
        "upstream_error": None,
        "limiter": None,
        "limits": [],
        "duration_ms": 1.0,
        "upstream_ms": 0.5,
        "pid": 1,
    }
    if route == "delete_image":
        fields["outcome"] = "deleted"
    return RequestRecord(time.time(), request_id, fields)
