"""Every route of the image API: forwarded as Glance serves it, under its own
rule, refused by that rule, audited; routes the operator has not enabled
are never forwarded."""

from __future__ import annotations

import uuid

import pytest

from gateway.http.routes import DEFAULT_ENABLED_ROUTES, GLANCE_ROUTES, Body, Route
from tests.http.conftest import RoutedFactory
from tests.support.faults import assert_fault
from tests.support.tokens import TokenFactory

IMAGE_ID = str(uuid.uuid4())
EXAMPLE_PARAMS = {
    "image_id": IMAGE_ID,
    "task_id": str(uuid.uuid4()),
    "member_id": "project-b",
    "tag_value": "gold",
    "store_id": "fs",
    "namespace": "OS::Compute::Quota",
    "resource_type": "OS::Glance::Image",
    "property_name": "hw_cpu_cores",
    "object_name": "cpu",
    "tag_name": "fast",
}
EXAMPLE_BODIES = {
    Body.NONE: b"",
    Body.JSON: b'{"name": "example"}',
    Body.JSON_PATCH: b'[{"op": "replace", "path": "/name", "value": "renamed"}]',
    Body.BINARY: bytes(range(256)) * 4,
}


def example_path(route: Route) -> str:
    assert route.upstream_path is not None
    return route.upstream_path.format(**EXAMPLE_PARAMS)


def headers_for(route: Route, token: str) -> dict[str, str]:
    headers = {"X-Auth-Token": token}
    if route.body is not Body.NONE:
        headers["Content-Type"] = route.body.value
    return headers


def route_id(route: Route) -> str:
    return f"{route.name} {route.method} {route.paths[0]}"


ENABLED = [r for r in GLANCE_ROUTES if r.name in DEFAULT_ENABLED_ROUTES]
NOT_ENABLED = [r for r in GLANCE_ROUTES if r.name not in DEFAULT_ENABLED_ROUTES]


@pytest.mark.parametrize("route", ENABLED, ids=route_id)
async def test_every_route_is_forwarded_as_glance_serves_it_and_audited(
    routed: RoutedFactory, token: TokenFactory, route: Route
) -> None:
    gateway = await routed()
    gateway.upstream.status, gateway.upstream.body = 200, b'{"answered": true}'
    body = EXAMPLE_BODIES[route.body]
    response = await gateway.client.request(
        route.method,
        example_path(route) + "?limit=5",
        headers=headers_for(route, token("operations", "root", ["admin"])),
        data=body or None,
    )
    assert response.status == 200, await response.text()
    assert await response.read() == b'{"answered": true}'
    [received] = gateway.upstream.received
    assert (received.method, received.raw_path) == (route.method, example_path(route) + "?limit=5")
    assert gateway.upstream.bodies == [body]
    assert received.headers["X-Roles"] == "admin"
    [record] = gateway.audit_records()
    assert (record["route"], record["method"], record["outcome"]) == (
        route.name,
        route.method,
        "succeeded" if route.name != "delete_image" else "deleted",
    )
    assert record["audit"] == f"image.{route.name}"
    assert record["image_id"] == (IMAGE_ID if "image_id" in route.grammar else None)


@pytest.mark.parametrize("route", ENABLED, ids=route_id)
async def test_every_route_is_refused_by_its_rule_unforwarded(
    routed: RoutedFactory, token: TokenFactory, route: Route
) -> None:
    gateway = await routed()
    body = EXAMPLE_BODIES[route.body]
    response = await gateway.client.request(
        route.method,
        example_path(route),
        headers=headers_for(route, token(roles=["cloudImages:nobody"])),
        data=body or None,
    )
    await assert_fault(response, 403, "forbidden")
    assert gateway.upstream.received == []
    [record] = gateway.audit_records()
    assert (record["route"], record["outcome"], record["status"]) == (route.name, "denied", 403)


@pytest.mark.parametrize("route", NOT_ENABLED, ids=route_id)
async def test_a_route_not_enabled_is_never_forwarded(
    routed: RoutedFactory, token: TokenFactory, route: Route
) -> None:
    gateway = await routed()
    response = await gateway.client.request(
        route.method,
        example_path(route),
        headers=headers_for(route, token("operations", "root", ["admin"])),
        data=EXAMPLE_BODIES[route.body] or None,
    )
    assert response.status in (404, 405)
    await assert_fault(
        response, response.status, "itemNotFound" if response.status == 404 else "badMethod"
    )
    if response.status == 405:
        assert route.method not in response.headers["Allow"]
    assert gateway.upstream.received == []


async def test_the_operator_enables_and_disables_routes(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    gateway = await routed(
        routes={"enable": ["get_metadef_namespaces"], "disable": ["delete_image"]}
    )
    admin = {"X-Auth-Token": token("operations", "root", ["admin"])}
    gateway.upstream.status, gateway.upstream.body = 200, b"{}"
    enabled = await gateway.client.get("/v2/metadefs/namespaces", headers=admin)
    assert enabled.status == 200
    disabled = await gateway.client.delete(f"/v2/images/{IMAGE_ID}", headers=admin)
    await assert_fault(disabled, 405, "badMethod")
    assert disabled.headers["Allow"] == "GET, PATCH"
    assert [r.path for r in gateway.upstream.received] == ["/v2/metadefs/namespaces"]


async def test_unknown_routes_in_config_are_refused_with_their_key_path(
    routed: RoutedFactory,
) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"routes\.enable: .*unknown route 'get_flavors'"):
        await routed(routes={"enable": ["get_flavors"]})


async def test_a_parameter_is_forwarded_as_one_path_segment(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    """A tag with a space and a ':' is Glance's; it arrives quoted, one segment."""
    gateway = await routed()
    admin = {"X-Auth-Token": token("operations", "root", ["admin"])}
    response = await gateway.client.put(f"/v2/images/{IMAGE_ID}/tags/gold%20tier:a", headers=admin)
    assert response.status == 204
    [received] = gateway.upstream.received
    assert received.raw_path == f"/v2/images/{IMAGE_ID}/tags/gold%20tier%3Aa"
    assert received.match_info["tail"] == f"v2/images/{IMAGE_ID}/tags/gold tier:a"


async def test_a_value_that_would_name_another_resource_is_refused_unforwarded(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    """A tag that decodes to "../file" must not name another resource upstream."""
    gateway = await routed()
    admin = {"X-Auth-Token": token("operations", "root", ["admin"])}
    response = await gateway.client.put(f"/v2/images/{IMAGE_ID}/tags/..%2Ffile", headers=admin)
    fault = await assert_fault(response, 400, "badRequest")
    assert fault["message"] == "Invalid tag_value: must be an image tag."
    assert gateway.upstream.received == []


async def test_rate_limit_rules_select_routes_by_name(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    rule = {"name": "uploads", "routes": ["upload_image"], "unit": "hour", "value": 2}
    gateway = await routed(rate_limit={"rules": [rule]})
    gateway.upstream.status = 204
    owner = {
        "X-Auth-Token": token("operations", "root", ["admin"]),
        "Content-Type": "application/octet-stream",
    }
    statuses = [
        (await gateway.client.put(f"/v2/images/{IMAGE_ID}/file", data=b"x", headers=owner)).status
        for _ in range(3)
    ]
    assert statuses[:2] == [204, 204]
    assert statuses[2] == 413
    # Another route on the same image is not counted by the rule.
    other = await gateway.client.put(f"/v2/images/{IMAGE_ID}/tags/t", headers=owner)
    assert other.status == 204
    assert [r.method for r in gateway.upstream.received] == ["PUT", "PUT", "PUT"]


async def test_backend_errors_reach_the_client_clean_for_every_accept(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    """webob's plain, HTML and JSON error bodies all become our envelope with
    Glance's sentence alone."""
    gateway = await routed()
    bodies = {
        "text/plain": b"403 Forbidden\n\nYou are not permitted to modify 'os_hidden'.\n\n  ",
        "text/html": b"<html><head><title>403 Forbidden</title></head><body>"
        b"<h1>403 Forbidden</h1>You are not permitted to modify 'os_hidden'.<br /><br />"
        b"\n\n</body></html>",
        "application/json": b'{"message": "You are not permitted to modify \'os_hidden\'.'
        b'<br /><br />\\n\\n", "code": "403 Forbidden", "title": "Forbidden"}',
    }
    for content_type, body in bodies.items():
        gateway.upstream.status, gateway.upstream.body = 403, body
        gateway.upstream.content_type = content_type
        for accept in ("application/json", "*/*", None):
            headers = {"X-Auth-Token": token("operations", "root", ["admin"])}
            if accept is not None:
                headers["Accept"] = accept
            response = await gateway.client.get(f"/v2/images/{IMAGE_ID}", headers=headers)
            fault = await assert_fault(response, 403, "forbidden")
            assert fault["message"] == "You are not permitted to modify 'os_hidden'.", (
                content_type,
                accept,
            )


async def test_glance_client_headers_pass_both_ways(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    """What glanceclient and openstacksdk send with image data reaches Glance
    (which reads both), and Glance's end-to-end answer headers reach them."""
    gateway = await routed()
    gateway.upstream.status, gateway.upstream.body = 200, b"\0" * 16
    gateway.upstream.content_type = "application/octet-stream"
    gateway.upstream.headers = {
        "Content-MD5": "fd0f0cc58d8d7b3ae4bae8a7f9e8ae0d",
        "ETag": '"fd0f0cc58d8d7b3ae4bae8a7f9e8ae0d"',
        "OpenStack-image-import-methods": "glance-direct,web-download",
        "OpenStack-image-store-ids": "fs",
    }
    admin = token("operations", "root", ["admin"])
    staged = await gateway.client.put(
        f"/v2/images/{IMAGE_ID}/stage",
        data=b"\0" * 16,
        headers={
            "X-Auth-Token": admin,
            "Content-Type": "application/octet-stream",
            "X-OpenStack-Image-Size": "16",
            "X-Image-Meta-Store": "fs",
        },
    )
    assert staged.status == 200
    sent = gateway.upstream.received[0].headers
    assert (sent["X-OpenStack-Image-Size"], sent["X-Image-Meta-Store"]) == ("16", "fs")
    assert sent["Content-Type"] == "application/octet-stream"
    downloaded = await gateway.client.get(
        f"/v2/images/{IMAGE_ID}/file", headers={"X-Auth-Token": admin}
    )
    assert await downloaded.read() == b"\0" * 16
    for name, value in gateway.upstream.headers.items():
        assert downloaded.headers[name] == value
    assert downloaded.headers["Content-Type"] == "application/octet-stream"
