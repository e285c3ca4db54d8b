"""What every answer of the gateway carries: request ids, Via, and the fault envelope."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import ClientResponse

from gateway import __version__
from tests.support.gateway_app import Client

REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
OUR_VIA = f"1.1 image-gateway (image-gateway/{__version__})"


def assert_request_id(response: ClientResponse) -> str:
    request_id = response.headers["X-Compute-Request-Id"]
    assert REQUEST_ID.match(request_id)
    assert response.headers["X-OpenStack-Request-Id"] == request_id
    return request_id


async def assert_fault(response: ClientResponse, status: int, name: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert list(body) == [name]
    assert body[name]["code"] == status
    assert body[name]["message"]
    assert_request_id(response)
    return dict(body[name])


def delete(client: Client, image_id: str, tok: str | None, **headers: str) -> Any:
    """DELETE /v2/images/{image_id} through the gateway, with ``tok`` as X-Auth-Token."""
    if tok is not None:
        headers["X-Auth-Token"] = tok
    return client.delete(f"/v2/images/{image_id}", headers=headers)
