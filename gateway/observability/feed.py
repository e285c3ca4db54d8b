"""How a decision reaches the dashboard's DecisionLog.

One process: straight into the log. Several workers: the parent, which
serves the admin listener, listens on a Unix socket in a private directory
and each worker streams its records to it. A worker never waits on the
dashboard, and does not pay for it per request: records are gathered and
sent every ``FLUSH_SECONDS`` as one JSON array on one line (one write for
the worker, one read and one parse for the parent, however many requests it
holds). Past a bound a record is dropped and counted instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from gateway.observability.decisions import DecisionLog

log = logging.getLogger("gateway.observability")

# A worker buffers at most this much unsent feed before dropping records.
MAX_BUFFERED_BYTES = 4 * 1024 * 1024
# How often a worker sends what it gathered: the dashboard refreshes every
# second, so a tenth of that is live, and a batch per request (each a write
# that wakes the parent) was a fifth of a request's CPU.
FLUSH_SECONDS = 0.05
# Records gathered between two flushes, at most (about 0.2 MB/s per worker at
# 100k requests/s); beyond, they are dropped and counted.
MAX_BATCH = 20_000
# Records are a few hundred bytes; a longer line is not one of ours.
MAX_LINE_BYTES = 1024 * 1024


class DecisionFeed(Protocol):
    # Records that never reached the dashboard, for the metrics.
    dropped: int

    async def start(self) -> None: ...

    def publish(self, kind: str, record: Mapping[str, Any]) -> None: ...

    async def close(self) -> None: ...


class LocalFeed:
    def __init__(self, decisions: DecisionLog) -> None:
        self.decisions = decisions
        self.dropped = 0

    async def start(self) -> None:
        pass

    def publish(self, kind: str, record: Mapping[str, Any]) -> None:
        self.decisions.add(kind, record)

    async def close(self) -> None:
        pass


class SocketFeed:
    """A worker's end: connected on app start-up, then gather, send in batches, never wait."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dropped = 0
        self._writer: asyncio.StreamWriter | None = None
        self._batch: list[dict[str, Any]] = []
        self._flush_handle: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        try:
            _, self._writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as exc:
            log.warning(
                "decision feed %s unreachable, dashboard will miss this worker: %s", self.path, exc
            )

    def publish(self, kind: str, record: Mapping[str, Any]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing() or len(self._batch) >= MAX_BATCH:
            self.dropped += 1
            return
        self._batch.append({"kind": kind, "record": record})
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self._batch = self._batch, []
        writer = self._writer
        if not batch or writer is None:
            return
        if writer.is_closing() or writer.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            self.dropped += len(batch)
            return
        line = json.dumps(batch, separators=(",", ":"))
        writer.write(line.encode() + b"\n")

    async def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()


class FeedListener:
    """The admin process's end: every record any worker sends goes into the log."""

    def __init__(self, path: Path, decisions: DecisionLog) -> None:
        self.path = path
        self.decisions = decisions
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(
            self._receive, str(self.path), limit=MAX_LINE_BYTES
        )

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    messages = json.loads(line)
                except ValueError as exc:
                    log.warning("ignored a malformed decision line: %s", exc)
                    continue
                # A batch, or (from anything but a SocketFeed) one message.
                for message in messages if isinstance(messages, list) else [messages]:
                    try:
                        self.decisions.add(str(message["kind"]), message["record"])
                    except (KeyError, TypeError) as exc:
                        log.warning("ignored a malformed decision line: %s", exc)
        except (OSError, ValueError) as exc:
            log.warning("decision feed connection failed: %s", exc)
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
