"""The audit trail's own sink: stderr, or a file every worker appends to.

Each record is one JSON line written with a single ``write`` on a file
opened with O_APPEND, so the lines of several workers never interleave.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.config import AuditConfig

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

    def write(self, record: Mapping[str, Any]) -> None:
        at = datetime.fromtimestamp(float(record["time"]), UTC).isoformat(timespec="milliseconds")
        entry = {"audit": f"image.{record.get('route')}", "at": at, **record}
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        if self._fd is None:
            sys.stderr.write(line)
            sys.stderr.flush()
            return
        try:
            os.write(self._fd, line.encode())
        except OSError as exc:
            log.error(
                "audit record for %s not written to %s: %s",
                record.get("request_id"),
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

    def write(self, record: Mapping[str, Any]) -> None:
        pass
