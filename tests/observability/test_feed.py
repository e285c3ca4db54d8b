"""The worker → admin-process decision feed, over a real Unix socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from gateway.app import GATEWAY, build_app
from gateway.config import parse_config
from gateway.observability.decisions import DecisionLog
from gateway.observability.feed import FeedListener, SocketFeed
from tests.conftest import Client, Keys, config_data
from tests.observed import sample_value


async def arrived(decisions: DecisionLog, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while len(decisions.decisions) + len(decisions.audit) < count:
        assert asyncio.get_running_loop().time() < deadline, "records did not arrive"
        await asyncio.sleep(0.01)


def record(request_id: str) -> dict[str, object]:
    return {"time": 0.0, "request_id": request_id, "status": 204, "limits": []}


async def test_records_from_a_worker_reach_the_admin_log(tmp_path: Path) -> None:
    decisions = DecisionLog(100)
    listener = FeedListener(tmp_path / "feed.sock", decisions)
    await listener.start()
    feed = SocketFeed(listener.path)
    await feed.start()
    feed.publish("decision", record("req-1"))
    feed.publish("audit", record("req-1"))
    feed.publish("decision", record("req-2"))
    await arrived(decisions, 3)
    assert [d["request_id"] for d in decisions.search()] == ["req-2", "req-1"]
    assert [a["request_id"] for a in decisions.audit_trail()] == ["req-1"]
    assert feed.dropped == 0
    await feed.close()
    await listener.close()
    assert not listener.path.exists()


async def test_a_malformed_line_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    decisions = DecisionLog(100)
    listener = FeedListener(tmp_path / "feed.sock", decisions)
    await listener.start()
    _, writer = await asyncio.open_unix_connection(str(listener.path))
    writer.write(b"not json\n" + b'{"kind": "decision"}\n')
    writer.write(b'{"kind": "decision", "record": {"time": 0, "request_id": "req-ok"}}\n')
    await writer.drain()
    await arrived(decisions, 1)
    assert [d["request_id"] for d in decisions.search()] == ["req-ok"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "malformed decision line" in w]) == 2
    writer.close()
    await listener.close()


async def test_without_an_admin_process_records_are_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed = SocketFeed(tmp_path / "nobody.sock")
    await feed.start()
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    feed.publish("decision", record("req-1"))
    feed.publish("decision", record("req-2"))
    assert feed.dropped == 2
    await feed.close()


async def test_dropped_records_are_a_metric(
    aiohttp_client: Callable[..., Awaitable[Client]], keys: Keys, tmp_path: Path
) -> None:
    config = parse_config(config_data("http://127.0.0.1:9", keys))
    app = build_app(config, feed=SocketFeed(tmp_path / "nobody.sock"))
    gateway = await aiohttp_client(app)
    for _ in range(3):
        assert (await gateway.get("/nowhere")).status == 404
    exposition = generate_latest(app[GATEWAY].metrics.registry).decode()
    assert sample_value(exposition, "gateway_decision_feed_dropped_total") == 3
