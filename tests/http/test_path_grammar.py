"""Each path parameter's grammar: what Glance takes passes, anything a hop
could read as another path is refused; and a refusal is a 400 before
authentication, logged, with nothing forwarded."""

from __future__ import annotations

import logging
import uuid

import pytest

from gateway.http.path_grammar import ParamGrammar
from gateway.http.routes import PARAMS, ROUTES, Route
from tests.http.conftest import RoutedFactory
from tests.support.faults import assert_fault
from tests.support.tokens import TokenFactory

IMAGE_ID = str(uuid.uuid4())

# Values each parameter must take: what Glance and its clients use.
HELD = {
    "image_id": [IMAGE_ID, IMAGE_ID.upper()],
    "member_id": ["8d6a1ab7e9c04f0c9f0d4b1c2e3f4a5b", "project-b", "a" * 255, "alice@example.org",
                  "_svc", "p.x~y:z+w=v"],
    "tag_value": ["gold", "gold tier", "t" * 255, "ünïcödé", "日本語", "a.b",
                  "x..y", "v1.0:stable", "~", "'\"<>"],
    "store_id": ["fs", "ceph-1", "os_glance_staging_store", "s" * 255, "store.a"],
    "namespace": ["OS::Compute::Quota", "CIM::ProcessorAllocationSettingData", "n" * 80],
    "property_name": ["hw_cpu_cores", "hw:cpu_policy"],
    "object_name": ["CPU Limits", "Virtual CPU Topology"],
    "tag_name": ["fast", "Ünicode tag"],
    "resource_type": ["OS::Glance::Image"],
}  # fmt: skip
# Values no parameter may take, decoded as aiohttp hands them to the chain.
REFUSED_BY_ALL = [
    ".", "..", "../../B", "..;", ".hidden", "a/b", "/", "a\\b", "\\", "%2F", "a%2e", "%",
    "%252F", "\x00", "a\x00b", "\n", "a\r\nX-Roles: admin", "\t", "\x7f", "\x85", "a?b", "a;b", ";",
    "a#b", "\u202e", "\u200b", "\ufeff", "\u2028", "\udcff", "\ue000", "\uff0f", "\uff3c",
    "\uff0e\uff0e", "\u2025", "a\uff05", "\U000e0001",
]  # fmt: skip
LONGEST = {"image_id": 36, "task_id": 36, "member_id": 255, "tag_value": 255, "store_id": 255,
           "namespace": 80, "resource_type": 80, "property_name": 80, "object_name": 80,
           "tag_name": 80}  # fmt: skip


@pytest.mark.parametrize(
    ("grammar", "value"),
    [(PARAMS[name], value) for name, values in HELD.items() for value in values],
    ids=lambda v: v.name if isinstance(v, ParamGrammar) else repr(v)[:40],
)
def test_what_glance_takes_is_held(grammar: ParamGrammar, value: str) -> None:
    assert grammar.holds(value)


@pytest.mark.parametrize("grammar", PARAMS.values(), ids=lambda g: g.name)
@pytest.mark.parametrize("value", REFUSED_BY_ALL, ids=repr)
def test_what_a_hop_could_read_as_another_path_is_refused(
    grammar: ParamGrammar, value: str
) -> None:
    assert not grammar.holds(value)


@pytest.mark.parametrize("grammar", PARAMS.values(), ids=lambda g: g.name)
def test_every_value_is_bounded_by_glances_own_limit(grammar: ParamGrammar) -> None:
    assert grammar.max_len == LONGEST[grammar.name]
    longest = HELD.get(grammar.name, [IMAGE_ID])[0]
    if not grammar.lower:
        longest = "a" * grammar.max_len
        assert grammar.holds(longest)
    assert not grammar.holds(longest + "a")


def test_a_member_id_is_a_project_id_and_nothing_else() -> None:
    member = PARAMS["member_id"]
    for value in ("a b", "ü", "a,b", "a/b", "-lead", "a" * 256):
        assert not member.holds(value), value


def test_a_store_id_is_an_identifier() -> None:
    store = PARAMS["store_id"]
    for value in ("a b", "a:b", "a,b", "ü", "-x", "s" * 256):
        assert not store.holds(value), value


def test_every_parameter_of_every_route_has_a_grammar() -> None:
    for route in ROUTES:
        templates = [*route.paths, *([route.upstream_path] if route.upstream_path else [])]
        for template in templates:
            for name in route.grammar:
                assert "{" + name in template, (route.name, template)
        assert len(route.grammar) == len(route.params)


def test_a_route_whose_parameter_has_no_grammar_cannot_be_built() -> None:
    with pytest.raises(ValueError, match=r"route x: /v2/images/\{image_id\} names"):
        Route(name="x", method="GET", paths=("/v2/images/{image_id}",),
              upstream_path="/v2/images/{image_id}")  # fmt: skip


# Raw request targets: what a client puts on the wire, one per kind of trick.
RAW_REFUSALS = {
    "encoded dot segments and slash": "/v2/images/{id}/members/..%2F..%2F{other}",
    "encoded backslash": "/v2/images/{id}/members/..%5C..%5C{other}",
    "double encoding": "/v2/images/{id}/tags/..%252F..%252F{other}",
    "encoded NUL": "/v2/images/{id}/tags/a%00b",
    "encoded line break": "/v2/images/{id}/tags/a%0d%0aX-Roles:%20admin",
    "over-long tag": "/v2/images/{id}/tags/" + "t" * 256,
    "dot-semicolon": "/v2/images/{id}/members/..;",
    "fullwidth solidus": "/v2/images/{id}/tags/a%EF%BC%8Fb",
    "not UTF-8": "/v2/images/{id}/tags/%ff",
    "encoded question mark": "/v2/images/{id}/members/..%3F",
    "store id with a slash": "/v2/stores/..%2Fimages/{id}",
    "image id not a UUID": "/v2/images/{id}%0a",
}  # fmt: skip


@pytest.mark.parametrize("target", RAW_REFUSALS.values(), ids=RAW_REFUSALS.keys())
async def test_a_refused_value_is_a_400_before_authentication_logged_and_unforwarded(
    routed: RoutedFactory, caplog: pytest.LogCaptureFixture, target: str
) -> None:
    gateway = await routed()
    caplog.set_level(logging.INFO, logger="gateway.http.faults")
    path = target.format(id=IMAGE_ID, other=uuid.uuid4())
    method = "PUT" if "/tags/" in path else "DELETE"
    # No token at all: the value is refused before anyone is asked who calls.
    response = await gateway.client.request(method, path)
    fault = await assert_fault(response, 400, "badRequest")
    assert fault["message"].startswith("Invalid ")
    assert "WWW-Authenticate" not in response.headers
    assert gateway.upstream.received == []
    request_id = response.headers["X-OpenStack-Request-Id"]
    [logged] = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert "-> 400 Invalid" in logged.getMessage()
    [record] = gateway.audit_records()
    assert (record["status"], record["outcome"]) == (400, "rejected")
    assert record["reason"] == fault["message"]


async def test_a_refused_value_is_never_counted_by_the_limiter(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    rule = {"name": "tags", "routes": ["add_tag"], "unit": "hour", "value": 1}
    gateway = await routed(rate_limit={"rules": [rule]})
    admin = {"X-Auth-Token": token("operations", "root", ["admin"])}
    for _ in range(3):
        refused = await gateway.client.put(f"/v2/images/{IMAGE_ID}/tags/..%2Fx", headers=admin)
        await assert_fault(refused, 400, "badRequest")
    allowed = await gateway.client.put(f"/v2/images/{IMAGE_ID}/tags/gold", headers=admin)
    assert allowed.status == 204
    assert [r.raw_path for r in gateway.upstream.received] == [f"/v2/images/{IMAGE_ID}/tags/gold"]
