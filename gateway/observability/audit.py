"""The audit trail's own sink: stderr, or a file every worker appends to.

Each record is one JSON line written with a single ``write`` on a file
opened with O_APPEND, so the lines of several workers never interleave. The
line is the request's record (gateway.observability.records) as the access
log has it, led by ``audit`` and ``at``: serialized once for both.
"""

from __future__ import annotations

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

    def open(self) -> None:
        if self.target != "stderr":
            # A sink that cannot be written must stop start-up, not lose
            # the trail silently.
            self._fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, record: RequestRecord) -> None:
        line = record.json(audit=f"image.{record.fields['route']}", at=record.at()) + "\n"
        if self._fd is None:
            sys.stderr.write(line)
            sys.stderr.flush()
            return
        try:
            os.write(self._fd, line.encode())
        except OSError as exc:
            log.error(
                "audit record for %s not written to %s: %s",
                record.request_id,
                self.target,
                exc,
            )

    def close(self) -> None:
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
