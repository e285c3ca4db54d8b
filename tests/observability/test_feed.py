"""The worker → admin-process feed, over a real Unix socket: records for the
dashboard, and each worker's metrics, summed when /metrics is scraped."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import GATEWAY, build_app
from gateway.config import parse_config
from gateway.observability.batch import RecordBatch
from gateway.observability.decisions import DecisionLog
from gateway.observability.exposition import exposition, render
from gateway.observability.feed import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    FeedListener,
    LocalFeed,
    SocketFeed,
)
from gateway.observability.metric_types import MetricsSnapshot
from gateway.observability.metrics import GatewayMetrics, local_source
from gateway.observability.records import RequestRecord
from tests.support.gateway_app import Client
from tests.support.gateway_config import config_data
from tests.support.observed import sample_record, sample_value
from tests.support.tokens import Keys
from tests.support.waiting import until


async def arrived(decisions: DecisionLog, count: int) -> None:
    await until(lambda: len(decisions) >= count, f"{count} records", deadline=5, interval=0.01)


def count_deletes(metrics: GatewayMetrics, n: int) -> None:
    for _ in range(n):
        metrics.record_request(
            route="delete_image",
            method="DELETE",
            status=204,
            decision="forwarded",
            seconds=0.002,
            upstream_seconds=0.001,
        )


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
    await until(
        lambda: listener.connected != connected,
        "the listener to take the connection",
        deadline=5,
        interval=0.001,
    )
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


def frame(*records: RequestRecord) -> bytes:
    """A worker's frame for ``records``, as SocketFeed writes it."""
    batch = RecordBatch()
    for record in records:
        batch.add(record)
    return batch.frame()


def reframed(body: bytes, *, count: int, size: int | None = None) -> bytes:
    """``body`` behind a header that says ``count`` records and ``size`` bytes."""
    size = len(body) if size is None else size
    return b'{"batch":%d,"bytes":%d}\n' % (count, size) + body


def body_of(frame: bytes) -> bytes:
    return frame.split(b"\n", 1)[1]


def warnings_with(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage())


async def connected(listener: FeedListener) -> asyncio.StreamWriter:
    """A raw connection, once the listener has taken it."""
    before = listener.connected
    _, writer = await asyncio.open_unix_connection(str(listener.path))
    await until(
        lambda: listener.connected != before,
        "the listener to take the connection",
        deadline=5,
        interval=0.001,
    )
    return writer


async def gone(listener: FeedListener) -> None:
    await until(
        lambda: not listener.connected,
        "the listener to let the connection go",
        deadline=5,
        interval=0.001,
    )


async def only_a_good_batch_after(listener: FeedListener, writer: asyncio.StreamWriter) -> None:
    """A good batch sent after what the test wrote is taken, and only it."""
    writer.write(frame(sample_record("req-ok")))
    await writer.drain()
    await arrived(listener.decisions, 1)
    assert [d["request_id"] for d in listener.decisions.search()] == ["req-ok"]


def limited_record(request_id: str, subject: str, remaining: int, limiter: str) -> RequestRecord:
    record = sample_record(request_id)
    record.fields["limiter"] = limiter
    record.fields["limits"] = [
        {
            "subject": subject,
            "rule": "deletes",
            "limit": 2,
            "period": 60,
            "remaining": remaining,
            "reset_after": 1.0,
        },
    ]
    return record


def byte_record(request_id: str, remaining: int) -> RequestRecord:
    """A byte rule's refusal, with bytes left (fewer than asked)."""
    record = limited_record(request_id, "project:a", remaining, "limited")
    state = record.fields["limits"][0]
    state["rule"], state["limit"] = "upload-bytes", 1 << 20
    state["counts"], state["refused"] = "bytes", True
    return record


async def test_malformed_lines_are_logged_and_skipped(
    listener: FeedListener, caplog: pytest.LogCaptureFixture
) -> None:
    _, writer = await asyncio.open_unix_connection(str(listener.path))
    writer.write(b"not json\n")
    writer.write(b'{"kind": "decision"}\n')
    # Records as lines of their own are not a batch.
    writer.write(b'[{"time": 0, "request_id": "req-array"}]\n')
    writer.write(sample_record("req-line").json().encode() + b"\n")
    writer.write(b'{"reply_to": null, "metrics": {"counters": 3}}\n')
    await only_a_good_batch_after(listener, writer)
    assert warnings_with(caplog, "malformed decision") == 4
    assert warnings_with(caplog, "malformed metrics report") == 1
    writer.close()


@pytest.mark.parametrize(
    ("misstated", "lines_left"),
    [("more-records", 0), ("fewer-records", 0), ("fewer-bytes", 1)],
)
async def test_a_batch_its_header_misstates_is_logged_and_skipped(
    listener: FeedListener, caplog: pytest.LogCaptureFixture, misstated: str, lines_left: int
) -> None:
    _, writer = await asyncio.open_unix_connection(str(listener.path))
    two = body_of(frame(sample_record("req-a"), sample_record("req-b")))
    headed = {
        "more-records": reframed(two, count=3),
        "fewer-records": reframed(two, count=1),
        # One record and its bytes fewer: the last text is read as a line of its own.
        "fewer-bytes": reframed(two, count=1, size=two.rindex(b"\n", 0, -1) + 1),
    }
    writer.write(headed[misstated])
    await only_a_good_batch_after(listener, writer)
    assert warnings_with(caplog, "malformed decision batch") == 1
    assert warnings_with(caplog, "malformed decision line") == lines_left
    writer.close()


# One audited record's text, as the block a frame carries it in.
AUDITED_BLOCK = sample_record("req-garbage").json().encode() + b"\n"


def digest(**changes: Any) -> bytes:
    """A good digest for one record, with ``changes`` (``records__times=...`` sets
    ``records.times``)."""
    good: dict[str, Any] = {
        "records": {"times": [1.0], "durations": [1.0], "statuses": [204], "decisions": ["ok"]},
        "audited": [0],
        "audited_bytes": len(AUDITED_BLOCK),
        "limits": {
            "subjects": ["project:p"],
            "rules": ["deletes"],
            "limits": [2],
            "periods": [60],
            "remaining": [1],
            "at": [1.0],
            "limited": [False],
            "limited_counts": [0],
            "counts": ["requests"],
        },
    }
    for key, value in changes.items():
        holder, _, name = key.partition("__")
        if name:
            good[holder][name] = value
        else:
            good[holder] = value
    return json.dumps(good).encode()


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json",
        b"[]",
        digest(records=[]),
        digest(records__times=[1.0, 2.0]),
        digest(records__times=["now"]),
        digest(records__decisions=[7]),
        digest(records__statuses=[204.0]),
        digest(audited=None),
        digest(audited=[1]),
        digest(audited=[-1]),
        digest(audited=[True]),
        digest(audited=[]),
        digest(audited_bytes=len(AUDITED_BLOCK) - 1),
        digest(audited_bytes=len(AUDITED_BLOCK) + 1),
        digest(audited_bytes=-1),
        digest(audited_bytes="all"),
        digest(limits__periods=[60, 60]),
        digest(limits__limits=[0]),
        digest(limits__limited=[0]),
        digest(limits__at=None),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "records-not-an-object",
        "short-column",
        "time-not-a-number",
        "decision-not-text",
        "status-not-whole",
        "no-audited",
        "audited-past-the-end",
        "audited-negative",
        "audited-not-an-index",
        "audited-missing",
        "audited-block-short",
        "audited-block-long",
        "audited-block-negative",
        "audited-block-not-a-number",
        "limit-columns-uneven",
        "limit-of-zero",
        "limited-not-a-flag",
        "limit-column-missing",
    ],
)
async def test_a_garbage_digest_is_logged_and_its_batch_skipped(
    listener: FeedListener, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    _, writer = await asyncio.open_unix_connection(str(listener.path))
    # The same frame with a good digest is taken: the digest alone is at fault.
    writer.write(reframed(digest() + b"\n" + AUDITED_BLOCK, count=1))
    writer.write(reframed(garbage + b"\n" + AUDITED_BLOCK, count=1))
    writer.write(frame(sample_record("req-ok")))
    await writer.drain()
    await arrived(listener.decisions, 2)
    assert [d["request_id"] for d in listener.decisions.search()] == ["req-ok", "req-garbage"]
    assert [d["request_id"] for d in listener.decisions.audit_trail()] == ["req-ok", "req-garbage"]
    assert len(listener.decisions.limit_states()) == 1
    assert warnings_with(caplog, "malformed decision batch") == 1
    writer.close()


async def test_a_truncated_batch_is_logged_and_its_records_skipped(
    listener: FeedListener, caplog: pytest.LogCaptureFixture
) -> None:
    writer = await connected(listener)
    whole = frame(sample_record("req-a"), sample_record("req-b"))
    writer.write(whole[: len(whole) - 10])
    await writer.drain()
    writer.close()
    await gone(listener)
    assert warnings_with(caplog, "closed within a batch") == 1
    assert len(listener.decisions) == 0
    # The listener goes on with other workers.
    feed, _ = await worker(listener)
    feed.publish(sample_record("req-ok"))
    await arrived(listener.decisions, 1)
    await feed.close()


@pytest.mark.parametrize(
    "header",
    [
        b'{"batch": 1, "bytes": %d}\n' % (MAX_FRAME_BYTES + 1),
        b'{"batch": %d, "bytes": 100}\n' % (MAX_BATCH + 1),
        b'{"batch": 1, "bytes": "many"}\n',
        b'{"batch": 0, "bytes": 0}\n',
    ],
    ids=["too-many-bytes", "too-many-records", "bytes-not-a-number", "empty"],
)
async def test_a_header_that_does_not_bound_its_batch_ends_the_connection(
    listener: FeedListener, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    # The stream cannot be split past it: the connection ends, as with a line too long.
    writer = await connected(listener)
    writer.write(header)
    await writer.drain()
    await gone(listener)
    assert warnings_with(caplog, "a batch header that is not ours") == 1
    writer.close()


async def test_limit_states_folded_by_a_worker_are_the_ones_one_process_keeps(
    listener: FeedListener,
) -> None:
    records = [
        limited_record("req-1", "project:a", 1, "allowed"),
        limited_record("req-2", "project:b", 1, "allowed"),
        limited_record("req-3", "project:a", 0, "allowed"),
        limited_record("req-4", "project:a", 0, "limited"),
        limited_record("req-5", "project:a", 0, "limited"),
        byte_record("req-6", 1 << 18),
    ]
    local = LocalFeed(100)
    feed, _ = await worker(listener)
    for published, record in enumerate(records, 1):
        local.publish(record)
        feed.publish(record)
        if published in (4, 5):
            # A scrape sends what was gathered: the rest goes in a second batch.
            await listener.metrics()
    await listener.metrics()
    at = records[-1].time
    states = listener.decisions.limit_states(now=at)
    assert states == local.decisions.limit_states(now=at)
    assert [(s["subject"], s["rule"], s["used"], s["limited_count"]) for s in states] == [
        ("project:a", "deletes", 2, 2),
        ("project:a", "upload-bytes", 3 << 18, 1),
        ("project:b", "deletes", 1, 0),
    ]
    assert [s["counts"] for s in states] == ["requests", "bytes", "requests"]
    assert states[1]["limited_now"]
    assert listener.decisions.overview(now=at) == local.decisions.overview(now=at)
    assert listener.decisions.search() == local.decisions.search()
    assert [d["request_id"] for d in listener.decisions.audit_trail(limit=2)] == ["req-6", "req-5"]
    await feed.close()


async def test_a_burst_of_large_records_is_sent_in_frames_the_listener_takes(
    tmp_path: Path,
) -> None:
    # More than a frame holds, gathered in one loop turn: sent as several.
    count = 3 * MAX_FRAME_BYTES // 8000
    listener = FeedListener(tmp_path / "feed.sock", DecisionLog(count))
    await listener.start()
    feed, _ = await worker(listener)
    for n in range(count):
        record = sample_record(f"req-{n}")
        record.fields["path"] = "/v2/images/" + "x" * 8000
        feed.publish(record)
    await listener.metrics()
    assert (len(listener.decisions), feed.dropped) == (count, 0)
    assert listener.decisions.search(limit=1)[0]["request_id"] == f"req-{count - 1}"
    await feed.close()
    await listener.close()


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
    text = (await exposition(local_source(app[GATEWAY].metrics))).decode()
    assert sample_value(text, "gateway_decision_feed_dropped_total") == 3


async def test_one_process_log_shows_every_record_published_before_a_read() -> None:
    # The records wait for their batch's turn (FLUSH_SECONDS away); a read
    # in the same loop turn brings the log up to date first.
    local = LocalFeed(100)
    for n in range(3):
        local.publish(sample_record(f"req-{n}"))
    assert [d["request_id"] for d in local.decisions.search()] == ["req-2", "req-1", "req-0"]
    assert len(local.decisions) == 3
    local.publish(sample_record("req-3", route="images:list"))
    assert local.decisions.overview()["requests"] == 4
    assert [d["request_id"] for d in local.decisions.audit_trail()] == ["req-2", "req-1", "req-0"]
    await local.close()
