"""One record per request: the access line, the audit line and the dashboard's
record are the same fields, serialized once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from aiohttp import web

from gateway.demo_backend.image_store import add_image
from gateway.observability.logs import JsonFormatter
from gateway.observability.records import (
    RequestRecord,
    decision_of,
    request_record,
    upstream_error_kind,
)
from gateway.request_context import RequestContext
from tests.support.faults import delete
from tests.support.observed import ObservedFactory
from tests.support.tokens import TokenFactory


def record_of(caplog: pytest.LogCaptureFixture) -> RequestRecord:
    (logged,) = [r for r in caplog.records if r.name == "gateway.access"]
    record = getattr(logged, "fields", None)
    assert isinstance(record, RequestRecord)
    return record


async def test_a_deletes_access_line_audit_line_and_dashboard_record_agree(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    sink = tmp_path / "audit.jsonl"
    observed = await observe_standin(audit={"sink": str(sink)})
    image = add_image(store_app, owner="project-a")
    response = await delete(observed.gateway, image.id, token(user="alice"))
    assert response.status == 204

    record = record_of(caplog)
    # Serialized once: every later use reads the same text.
    assert record.fields_json is record.fields_json
    fields = json.loads(record.fields_json)
    assert fields["outcome"] == "deleted"

    (logged,) = [r for r in caplog.records if r.name == "gateway.access"]
    access = json.loads(JsonFormatter().format(logged))
    (audit,) = [json.loads(line) for line in sink.read_text().splitlines()]
    (shown,) = (await observed.api("/api/decisions"))["decisions"]
    (trail,) = (await observed.api("/api/audit"))["audit"]
    request_id = response.headers["X-OpenStack-Request-Id"]
    for line in (access, audit, shown, trail):
        assert line["request_id"] == request_id
        assert {k: line[k] for k in fields} == fields
    # Each use leads with its own keys; none repeats one.
    assert access["time"].endswith("+00:00")
    assert access["logger"] == "gateway.access"
    assert (audit["audit"], audit["time"]) == ("image.delete_image", record.time)
    assert audit["at"].endswith("+00:00")
    assert shown["time"] == trail["time"] == record.time
    text = JsonFormatter().format(logged)
    assert text.count('"request_id"') == 1
    assert text.count('"time"') == 1


async def test_only_a_delete_is_an_audit_record(
    observe_standin: ObservedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    observed = await observe_standin()
    assert (await observed.gateway.get("/nowhere")).status == 404
    record = record_of(caplog)
    assert not record.audited
    assert "outcome" not in json.loads(record.json())
    assert (await observed.api("/api/audit"))["audit"] == []
    assert len((await observed.api("/api/decisions"))["decisions"]) == 1


async def test_a_path_with_a_unicode_line_separator_stays_one_line(
    observe_standin: ObservedFactory,
    token: TokenFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """U+2028 and U+2029 are line breaks to str.splitlines() and JavaScript:
    sent percent-encoded in a path, they must not split an audit or access line."""
    caplog.set_level(logging.INFO, logger="gateway.access")
    sink = tmp_path / "audit.jsonl"
    observed = await observe_standin(audit={"sink": str(sink)})
    response = await observed.gateway.delete(
        "/v2/images/a%E2%80%A8b%E2%80%A9c", headers={"X-Auth-Token": token(user="alice")}
    )
    assert response.status == 400
    (logged,) = [r for r in caplog.records if r.name == "gateway.access"]
    access = JsonFormatter().format(logged)
    trail = sink.read_text()
    for text in (access, trail):
        assert "\u2028" not in text
        assert "\u2029" not in text
        (line,) = text.splitlines()
        assert json.loads(line)["path"] == "/v2/images/a\u2028b\u2029c"
    assert "/v2/images/a\u2028b\u2029c" in json.loads(access)["message"]


def test_a_request_id_that_needs_escaping_stays_valid_json() -> None:
    record = RequestRecord(1.5, 'req-"odd"\\', {"status": 400})  # type: ignore[typeddict-item]
    assert json.loads(record.json(audit="image.delete")) == {
        "audit": "image.delete",
        "time": 1.5,
        "request_id": 'req-"odd"\\',
        "status": 400,
    }


@pytest.mark.parametrize("upstream_status", [None, 200, 204, 304, 404, 499, 500, 503])
@pytest.mark.parametrize("status", [204, 404, 499, 500, 503])
def test_a_records_decision_is_what_decision_of_says(
    upstream_status: int | None, status: int
) -> None:
    # The record decides a forwarded request without the helpers: it must
    # say what they say, whatever the backend answered.
    ctx = RequestContext("req-x", upstream_status=upstream_status)
    fields = request_record(
        ctx, method="DELETE", path="/v2/images/x", client_ip="", status=status, pid=1
    ).fields
    upstream_error = upstream_error_kind(ctx)
    assert (fields["upstream_error"], fields["decision"]) == (
        upstream_error,
        decision_of(ctx, status, upstream_error),
    )
