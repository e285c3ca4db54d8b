"""The worker → admin-process feed, over a real Unix socket: records for the
dashboard, and each worker's metrics, summed when /metrics is scraped."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.app import GATEWAY, build_app
from gateway.config import parse_config
from gateway.observability.decisions import DecisionLog
from gateway.observability.feed import FeedListener, SocketFeed
from gateway.observability.metrics import GatewayMetrics, MetricsSnapshot, local_source, render
from tests.conftest import Client, Keys, config_data
from tests.observed import sample_record, sample_value


async def arrived(decisions: DecisionLog, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while len(decisions.decisions) < count:
        assert asyncio.get_running_loop().time() < deadline, "records did not arrive"
        await asyncio.sleep(0.01)


def count_deletes(metrics: GatewayMetrics, n: int) -> None:
    for _ in range(n):
        metrics.record_request(
            route="delete_image", method="DELETE", status=204, decision="forwarded",
            seconds=0.002, upstream_seconds=0.001,
        )  # fmt: skip


def deletes_in(snapshot: MetricsSnapshot) -> float:
    text = render(GatewayMetrics(), snapshot).decode()
    return sample_value(text, "gateway_requests_total", route="delete_image")


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[FeedListener]:
    listener = FeedListener(tmp_path / "feed.sock", DecisionLog(100), collect_timeout=0.2)
    await listener.start()
    yield listener
    await listener.close()
    assert not listener.path.exists()


async def worker(listener: FeedListener) -> tuple[SocketFeed, GatewayMetrics]:
    """A worker's feed, once the listener has taken its connection."""
    metrics = GatewayMetrics()
    feed = SocketFeed(listener.path)
    connected = listener.connected
    await feed.start(metrics.snapshot)
    deadline = asyncio.get_running_loop().time() + 5
    while listener.connected == connected:
        assert asyncio.get_running_loop().time() < deadline, "the listener took no connection"
        await asyncio.sleep(0.001)
    return feed, metrics


async def test_records_from_a_worker_reach_the_admin_log(listener: FeedListener) -> None:
    feed, _ = await worker(listener)
    feed.publish(sample_record("req-1"))
    feed.publish(sample_record("req-2", route="images:list"))
    await arrived(listener.decisions, 2)
    assert [d["request_id"] for d in listener.decisions.search()] == ["req-2", "req-1"]
    # The delete's one record is its audit record too.
    (audited,) = listener.decisions.audit_trail()
    assert (audited["request_id"], audited["outcome"]) == ("req-1", "deleted")
    assert feed.dropped == 0
    await feed.close()


async def test_a_scrape_counts_every_request_answered_before_it(listener: FeedListener) -> None:
    (one, one_metrics), (two, two_metrics) = await worker(listener), await worker(listener)
    count_deletes(one_metrics, 3)
    count_deletes(two_metrics, 4)
    one.publish(sample_record("req-1"))
    # No waiting: the scrape asks both, and each sends its records before its counts.
    assert deletes_in(await listener.metrics()) == 7
    assert [d["request_id"] for d in listener.decisions.search()] == ["req-1"]
    count_deletes(two_metrics, 1)
    assert deletes_in(await listener.metrics()) == 8
    for feed in (one, two):
        await feed.close()


async def test_a_departed_workers_counts_stay(listener: FeedListener) -> None:
    (one, one_metrics), (two, two_metrics) = await worker(listener), await worker(listener)
    count_deletes(one_metrics, 2)
    count_deletes(two_metrics, 5)
    # It reports as it closes, as a worker does on SIGTERM.
    await one.close()
    await two.close()
    assert deletes_in(await listener.metrics()) == 7
    replacement, metrics = await worker(listener)
    count_deletes(metrics, 1)
    assert deletes_in(await listener.metrics()) == 8
    await replacement.close()


async def test_a_worker_that_does_not_answer_counts_with_its_last_report(
    listener: FeedListener, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker whose loop is stuck: it reported once and reads nothing since.
    metrics = GatewayMetrics()
    count_deletes(metrics, 3)
    _, writer = await asyncio.open_unix_connection(str(listener.path))
    report = {"reply_to": None, "metrics": metrics.snapshot().to_json()}
    writer.write(json.dumps(report).encode() + b"\n")
    await writer.drain()
    live, live_metrics = await worker(listener)
    count_deletes(live_metrics, 1)

    async def both_connected() -> MetricsSnapshot:
        while deletes_in(snapshot := await listener.metrics()) < 4:
            pass
        return snapshot

    assert deletes_in(await asyncio.wait_for(both_connected(), 5)) == 4
    assert any("did not report their metrics" in r.getMessage() for r in caplog.records)
    # Killed: what it last reported stays counted.
    writer.close()
    await live.close()
    assert deletes_in(await listener.metrics()) == 4


async def test_malformed_lines_are_logged_and_skipped(
    listener: FeedListener, caplog: pytest.LogCaptureFixture
) -> None:
    _, writer = await asyncio.open_unix_connection(str(listener.path))
    writer.write(b"not json\n")
    writer.write(b'{"kind": "decision"}\n')
    writer.write(b'[{"request_id": "req-no-time"}, 7]\n')
    writer.write(b'{"reply_to": null, "metrics": {"counters": 3}}\n')
    writer.write(b'[{"time": 0, "request_id": "req-ok"}]\n')
    await writer.drain()
    await arrived(listener.decisions, 1)
    assert [d["request_id"] for d in listener.decisions.search()] == ["req-ok"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "malformed decision" in w]) == 4
    assert len([w for w in warnings if "malformed metrics report" in w]) == 1
    writer.close()


async def test_without_an_admin_process_records_are_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed = SocketFeed(tmp_path / "nobody.sock")
    await feed.start(GatewayMetrics().snapshot)
    assert any("unreachable" in r.getMessage() for r in caplog.records)
    feed.publish(sample_record("req-1"))
    feed.publish(sample_record("req-2"))
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
    exposition = (await local_source(app[GATEWAY].metrics).exposition()).decode()
    assert sample_value(exposition, "gateway_decision_feed_dropped_total") == 3
