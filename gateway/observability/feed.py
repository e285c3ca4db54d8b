"""How a decision reaches the dashboard's DecisionLog.

One process: straight into the log. Several workers: the parent, which
serves the admin listener, listens on a Unix socket in a private directory
and each worker streams its records to it, one JSON line each. A worker
never waits on the dashboard: writes are buffered by the event loop, and
past a bound the record is dropped and counted instead.
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
    """A worker's end: connected on app start-up, then write and never wait."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dropped = 0
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        try:
            _, self._writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as exc:
            log.warning(
                "decision feed %s unreachable, dashboard will miss this worker: %s", self.path, exc
            )

    def publish(self, kind: str, record: Mapping[str, Any]) -> None:
        writer = self._writer
        if (
            writer is None
            or writer.is_closing()
            or writer.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES
        ):
            self.dropped += 1
            return
        line = json.dumps({"kind": kind, "record": record}, separators=(",", ":"))
        writer.write(line.encode() + b"\n")

    async def close(self) -> None:
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
                    message = json.loads(line)
                    self.decisions.add(str(message["kind"]), message["record"])
                except (ValueError, KeyError, TypeError) as exc:
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
