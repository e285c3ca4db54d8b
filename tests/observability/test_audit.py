"""An audit record for every DELETE decision, in its own sink."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web

from gateway.config import AuditConfig, ConfigError, parse_config
from gateway.demo_backend.image_store import add_image
from gateway.observability.audit import AuditSink
from gateway.observability.records import RequestRecord
from tests.support.faults import delete
from tests.support.gateway_config import config_data
from tests.support.observed import ObservedFactory, delete_new_image
from tests.support.tokens import Keys, TokenFactory


def read_audit(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_every_delete_decision_is_audited_to_the_file_sink(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
    tmp_path: Path,
) -> None:
    sink = tmp_path / "audit.jsonl"
    observed = await observe_standin(audit={"sink": str(sink)})
    image = add_image(store_app, owner="project-a")
    protected = add_image(store_app, owner="project-a", protected=True)
    responses = [
        await delete(observed.gateway, image.id, token(user="olivia", roles=["observer"])),
        await delete(observed.gateway, image.id, None),
        await delete(observed.gateway, protected.id, token(user="alice")),
        await delete(observed.gateway, image.id, token(user="alice")),
    ]
    assert [r.status for r in responses] == [403, 401, 403, 204]
    # Not a delete: no audit record.
    assert (await observed.gateway.put(f"/v2/images/{image.id}")).status == 405

    records = read_audit(sink)
    assert [r["request_id"] for r in records] == [
        r.headers["X-OpenStack-Request-Id"] for r in responses
    ]
    assert [r["outcome"] for r in records] == [
        "denied",
        "unauthenticated",
        "refused_by_backend",
        "deleted",
    ]
    deleted = records[3]
    assert deleted["audit"] == "image.delete_image"
    assert (deleted["user"], deleted["project"], deleted["image_id"]) == (
        "alice",
        "project-a",
        image.id,
    )
    assert (deleted["status"], deleted["upstream_status"]) == (204, 204)
    assert (records[0]["user"], records[0]["upstream_status"]) == ("olivia", None)
    assert records[1]["user"] is None
    assert records[2]["upstream_status"] == 403
    # The dashboard's trail has the same records, newest first.
    trail = (await observed.api("/api/audit"))["audit"]
    assert [r["request_id"] for r in trail] == [r["request_id"] for r in reversed(records)]


async def test_stderr_sink_writes_one_json_line(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    observed = await observe_standin()
    image = add_image(store_app, owner="project-a")
    response = await delete(observed.gateway, image.id, token())
    assert response.status == 204
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"audit"' in x]
    assert len(lines) == 1
    assert lines[0]["request_id"] == response.headers["X-OpenStack-Request-Id"]
    assert lines[0]["outcome"] == "deleted"


def test_audit_sink_in_a_missing_directory_is_a_config_error(keys: Keys, tmp_path: Path) -> None:
    data = config_data("http://127.0.0.1:9292", keys, audit={"sink": str(tmp_path / "no/a.log")})
    with pytest.raises(ConfigError, match=r"audit\.sink: .*does not exist"):
        parse_config(data)


async def test_an_audit_sink_that_cannot_be_written_is_logged_and_the_delete_still_answers(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # /dev/full accepts the open and refuses every write with ENOSPC.
    observed = await observe_standin(audit={"sink": "/dev/full"})
    response = await delete_new_image(observed, store_app, token())
    assert response.status == 204
    request_id = response.headers["X-OpenStack-Request-Id"]
    errors = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert errors == [
        f"audit record for {request_id} not written to /dev/full: "
        "[Errno 28] No space left on device"
    ]
    # The dashboard's trail still has it.
    trail = (await observed.api("/api/audit"))["audit"]
    assert [r["request_id"] for r in trail] == [request_id]


async def test_the_records_of_one_loop_turn_are_written_together_in_order(
    tmp_path: Path,
) -> None:
    sink = AuditSink(AuditConfig(sink=str(tmp_path / "audit.jsonl")))
    sink.open()
    fields = {"route": "delete_image", "outcome": "deleted"}
    for i in range(5):
        sink.write(RequestRecord(1.5 + i, f"req-{i}", fields))  # type: ignore[arg-type]
    # Nothing is written until the turn ends...
    assert (tmp_path / "audit.jsonl").read_text() == ""
    await asyncio.sleep(0)
    # ...then every record, in order, each a whole line.
    assert [r["request_id"] for r in read_audit(tmp_path / "audit.jsonl")] == [
        f"req-{i}" for i in range(5)
    ]
    sink.write(RequestRecord(9.0, "req-last", fields))  # type: ignore[arg-type]
    sink.close()
    # Closing writes what is still pending.
    assert read_audit(tmp_path / "audit.jsonl")[-1]["request_id"] == "req-last"
