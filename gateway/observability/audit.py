"""The audit trail's own sink: stderr, or a file every worker appends to.

Each record is one JSON line. The lines of one turn of the event loop go
out together in a single ``write`` on a file opened with O_APPEND, so the
lines of several workers never interleave, and a busy worker makes one
system call per turn, not one per request. The line is the request's record
(gateway.observability.records) as the access log has it, led by ``audit``
and ``at``: serialized once for both.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from gateway.config import AuditConfig
from gateway.observability.records import RequestRecord

log = logging.getLogger("gateway.audit")


class AuditSink:
    def __init__(self, config: AuditConfig) -> None:
        self.target = config.sink
        self._fd: int | None = None
        # (request id, line) of this loop turn, written when the turn ends.
        self._pending: list[tuple[str, str]] = []
        self._flush_handle: asyncio.Handle | None = None

    def open(self) -> None:
        if self.target != "stderr":
            # A sink that cannot be written must stop start-up, not lose
            # the trail silently.
            self._fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, record: RequestRecord) -> None:
        line = record.json(audit=f"image.{record.fields['route']}", at=record.at()) + "\n"
        self._pending.append((record.request_id, line))
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_handle = loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every pending line, in the order the requests finished."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        text = "".join(line for _, line in batch)
        if self._fd is None:
            sys.stderr.write(text)
            sys.stderr.flush()
            return
        data = text.encode()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            for request_id, _ in batch:
                log.error("audit record for %s not written to %s: %s", request_id, self.target, exc)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DiscardingAuditSink(AuditSink):
    """A dry run's sink: what did not happen leaves no trail."""

    def __init__(self) -> None:
        super().__init__(AuditConfig())

    def open(self) -> None:
        pass

    def write(self, record: RequestRecord) -> None:
        pass
