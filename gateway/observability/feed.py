"""How records reach the dashboard's DecisionLog, and workers' metrics /metrics.

One process: records go straight into the log, and /metrics reads this
process's own counters. Several workers: the parent, which serves the admin
listener, listens on a Unix socket in a private directory and each worker
keeps one connection to it:

- worker to parent: a batch of records every ``FLUSH_SECONDS`` (sooner when
  it grows past ``FLUSH_CHARS``), as one frame (gateway.observability.batch):
  a header line, then a digest of what the dashboard counts and the records'
  own JSON texts, which the parent keeps unparsed (nothing is serialized
  again; one write for the worker, one read and a parse of the small digest
  for the parent, however many requests it holds); and the worker's
  metrics, one JSON line ``{"reply_to": n, "metrics": {...}}``.
- parent to worker: ``{"collect": n}`` when /metrics is scraped; the worker
  sends what it has gathered, then its metrics, so the scrape counts every
  request answered before it.

A worker also reports its metrics every ``METRICS_REPORT_SECONDS`` when they
changed, and when it closes: a worker that dies takes at most that much of
its counts with it, and the parent keeps what a departed worker reported.
A worker never waits on the parent: past a bound a record is dropped and
counted instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.observability.batch import RecordBatch, parse_frame
from gateway.observability.decisions import DecisionLog
from gateway.observability.metric_types import MetricsSnapshot
from gateway.observability.records import RequestRecord

log = logging.getLogger("gateway.observability")

# A worker buffers at most this much unsent feed before dropping records.
MAX_BUFFERED_BYTES = 4 * 1024 * 1024
# How often a worker sends what it gathered: the dashboard refreshes every
# second, so a fifth of that is live (a scrape has the workers send first). A
# batch costs the parent mostly for waking it (it parses no record), so
# fewer, larger batches: every 50 ms, it cost twice as much per request.
FLUSH_SECONDS = 0.2
# Records gathered between two flushes, at most (about 0.2 MB/s per worker at
# 100k requests/s); beyond, they are dropped and counted.
MAX_BATCH = 20_000
# Records are a few hundred bytes, a metrics report a few kB; a longer line is not ours.
MAX_LINE_BYTES = 1024 * 1024
# A frame (a batch's digest and texts) is held to a line's bound; so a batch
# is sent as soon as its texts reach FLUSH_CHARS (a frame then has room for
# the digest, and for texts far from ASCII), sooner than FLUSH_SECONDS.
MAX_FRAME_BYTES = MAX_LINE_BYTES
FLUSH_CHARS = MAX_FRAME_BYTES // 8
# How often a worker reports metrics that changed, unasked.
METRICS_REPORT_SECONDS = 1.0
# How long a scrape waits for the workers' answers before it uses their last reports.
COLLECT_TIMEOUT = 2.0

MetricsReader = Callable[[], MetricsSnapshot]


class DecisionFeed(Protocol):
    # Records that never reached the dashboard, for the metrics.
    dropped: int

    async def start(self, metrics: MetricsReader) -> None: ...

    def publish(self, record: RequestRecord) -> None: ...

    async def close(self) -> None: ...


class _Gathering:
    """The records of the next batch: handed to ``send`` every
    ``FLUSH_SECONDS``, sooner once their texts reach ``FLUSH_CHARS``."""

    def __init__(self, send: Callable[[RecordBatch], None]) -> None:
        self._send = send
        self._batch = RecordBatch()
        self._flush_handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._batch)

    def add(self, record: RequestRecord) -> None:
        self._batch.add(record)
        if self._batch.chars >= FLUSH_CHARS:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._batch = self._batch, RecordBatch()
        if batch:
            self._send(batch)


class LocalFeed:
    """One process's own log, which takes the records in batches as the
    parent's does (a batch of one per request cost 45 k instructions a
    request: bench/gateway_instructions.py). Whoever reads the log first
    brings it up to date, so a read sees every record published before it."""

    def __init__(self, size: int) -> None:
        self._gathering = _Gathering(lambda batch: self.decisions.add(batch.batch()))
        self.decisions = DecisionLog(size, before_read=self._gathering.flush)
        self.dropped = 0

    async def start(self, metrics: MetricsReader) -> None:
        pass

    def publish(self, record: RequestRecord) -> None:
        self._gathering.add(record)

    async def close(self) -> None:
        self._gathering.flush()


class SocketFeed:
    """A worker's end: connected on app start-up, then gather, send in batches, never wait."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dropped = 0
        self._writer: asyncio.StreamWriter | None = None
        self._gathering = _Gathering(self._send)
        self._metrics: MetricsReader | None = None
        self._answering: asyncio.Task[None] | None = None
        self._report_handle: asyncio.TimerHandle | None = None
        self._last_report = b""

    async def start(self, metrics: MetricsReader) -> None:
        self._metrics = metrics
        try:
            reader, self._writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as exc:
            log.warning(
                "decision feed %s unreachable, dashboard will miss this worker: %s", self.path, exc
            )
            return
        loop = asyncio.get_running_loop()
        self._answering = loop.create_task(self._answer(reader))
        self._report_handle = loop.call_later(METRICS_REPORT_SECONDS, self._report_changes)

    def publish(self, record: RequestRecord) -> None:
        writer = self._writer
        if writer is None or writer.is_closing() or len(self._gathering) >= MAX_BATCH:
            self.dropped += 1
            return
        self._gathering.add(record)

    def _send(self, batch: RecordBatch) -> None:
        writer = self._writer
        if writer is None:
            return
        if writer.is_closing() or writer.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            self.dropped += len(batch)
            return
        frame = batch.frame()
        if len(frame) > MAX_FRAME_BYTES:
            # Only records of hundreds of kB each could get here.
            log.warning("dropped a batch of %d records: %d bytes", len(batch), len(frame))
            self.dropped += len(batch)
            return
        writer.write(frame)

    async def _answer(self, reader: asyncio.StreamReader) -> None:
        """The admin process's requests: each is answered with the records
        gathered so far, then the metrics, in that order."""
        try:
            while line := await reader.readline():
                try:
                    reply_to = orjson.loads(line)["collect"]
                    if not isinstance(reply_to, int):
                        raise TypeError(f"collect {reply_to!r} is not a number")
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("ignored a malformed request from the admin process: %s", exc)
                    continue
                self._gathering.flush()
                self._report(reply_to)
        except (OSError, ValueError) as exc:
            log.warning("decision feed connection failed: %s", exc)

    def _report(self, reply_to: int | None) -> None:
        writer, metrics = self._writer, self._metrics
        if writer is None or writer.is_closing() or metrics is None:
            return
        report = orjson.dumps(metrics().to_json())
        if reply_to is None and report == self._last_report:
            return
        self._last_report = report
        writer.write(orjson.dumps({"reply_to": reply_to})[:-1] + b',"metrics":' + report + b"}\n")

    def _report_changes(self) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() <= MAX_BUFFERED_BYTES:
            self._report(None)
        loop = asyncio.get_running_loop()
        self._report_handle = loop.call_later(METRICS_REPORT_SECONDS, self._report_changes)

    async def close(self) -> None:
        if self._report_handle is not None:
            self._report_handle.cancel()
        self._gathering.flush()
        self._report(None)
        if self._answering is not None:
            self._answering.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()


class _Worker:
    """One worker's connection as the admin process sees it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        # Its latest report: everything it counted since it started.
        self.metrics = MetricsSnapshot()
        self._asked: dict[int, asyncio.Future[None]] = {}

    def ask(self, request: int) -> asyncio.Future[None]:
        answered = asyncio.get_running_loop().create_future()
        self._asked[request] = answered
        self.writer.write(f'{{"collect":{request}}}\n'.encode())
        return answered

    def reported(self, message: dict[str, Any]) -> None:
        self.metrics = MetricsSnapshot.from_json(message["metrics"])
        reply_to = message.get("reply_to")
        answered = self._asked.pop(reply_to, None) if isinstance(reply_to, int) else None
        if answered is not None and not answered.done():
            answered.set_result(None)

    def gone(self) -> None:
        for answered in self._asked.values():
            if not answered.done():
                answered.set_result(None)
        self._asked.clear()


def _frame_size(header: dict[str, Any]) -> tuple[int, int]:
    """A batch header's record count and byte length: a header that does not
    bound its frame leaves the rest of the stream unsplittable, so it ends
    the connection, as a line too long does."""
    count, size = header["batch"], header.get("bytes")
    if not (
        type(count) is int
        and type(size) is int
        and 0 < count <= MAX_BATCH
        and 0 < size <= MAX_FRAME_BYTES
    ):
        raise ValueError(f"a batch header that is not ours: {header!r:.200}")
    return count, size


class FeedListener:
    """The admin process's end: every record any worker sends goes into the
    log, and /metrics sums every worker's report."""

    def __init__(
        self, path: Path, decisions: DecisionLog, *, collect_timeout: float = COLLECT_TIMEOUT
    ) -> None:
        self.path = path
        self.decisions = decisions
        self.collect_timeout = collect_timeout
        self._server: asyncio.Server | None = None
        self._workers: set[_Worker] = set()
        # What workers that have exited last reported: their counts stay.
        self._departed = MetricsSnapshot()
        self._requests = itertools.count(1)

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(
            self._receive, str(self.path), limit=MAX_LINE_BYTES
        )

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        worker = _Worker(writer)
        self._workers.add(worker)
        try:
            while line := await reader.readline():
                frame = self._take(worker, line)
                if frame is not None:
                    count, size = frame
                    self._take_batch(await reader.readexactly(size), count)
        except asyncio.IncompleteReadError as exc:
            log.warning("decision feed closed within a batch: %s", exc)
        except (OSError, ValueError) as exc:
            log.warning("decision feed connection failed: %s", exc)
        finally:
            self._workers.discard(worker)
            self._departed.add(worker.metrics)
            worker.gone()
            writer.close()

    def _take(self, worker: _Worker, line: bytes) -> tuple[int, int] | None:
        """One line; for a batch's header, how many records and bytes follow it."""
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            log.warning("ignored a malformed decision line: %s", exc)
            return None
        if isinstance(message, dict) and "batch" in message:
            return _frame_size(message)
        if isinstance(message, dict) and "metrics" in message:
            try:
                worker.reported(message)
            except ValueError as exc:
                log.warning("ignored a malformed metrics report: %s", exc)
            return None
        log.warning("ignored a malformed decision line: %.200r", message)
        return None

    def _take_batch(self, body: bytes, count: int) -> None:
        try:
            batch = parse_frame(body, count)
        except ValueError as exc:
            log.warning("ignored a malformed decision batch: %s", exc)
            return
        self.decisions.add(batch)

    async def metrics(self) -> MetricsSnapshot:
        """Every worker's counts as of now: each is asked and answers once it
        has sent the records it gathered; one that does not answer in time
        counts with its last report."""
        asked = [worker.ask(next(self._requests)) for worker in self._workers]
        if asked:
            _, late = await asyncio.wait(asked, timeout=self.collect_timeout)
            if late:
                log.warning(
                    "%d worker(s) did not report their metrics within %gs; "
                    "their last reports are used",
                    len(late),
                    self.collect_timeout,
                )
        total = MetricsSnapshot()
        total.add(self._departed)
        for worker in self._workers:
            total.add(worker.metrics)
        return total

    @property
    def connected(self) -> int:
        """Workers connected now."""
        return len(self._workers)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for worker in self._workers:
            worker.writer.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
