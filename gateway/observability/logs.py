"""Log set-up: every line carries the request id it belongs to.

In JSON format (the default) each record is one object per line; a record
logged with ``extra={"fields": {...}}`` (the access log) carries those
fields at the top level, for log shippers to index.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO


class _RequestIdDefault(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            # The line's own keys win: "time" stays ISO 8601 for log shippers.
            for key, value in fields.items():
                line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class LoopBatchedHandler(logging.StreamHandler[TextIO]):
    """Lines logged on an event loop are written together, once per loop turn.

    An access line per request was a write (and a flush) per request; under
    load a turn of the loop answers several, and their lines now share one
    write. Lines logged off any loop are written at once, and whatever is
    pending is written before them, so the order holds. ``flush`` (logging's
    shutdown calls it) writes anything still pending.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or (loop is not self._loop and self._pending):
            self._write_pending()
        if loop is None:
            self._write([line])
            return
        self._pending.append(line)
        if self._loop is None:
            self._loop = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
            super().flush()

    def _write_pending(self) -> None:
        self._loop = None
        lines, self._pending = self._pending, []
        if lines:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr: nothing to tell it with


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = LoopBatchedHandler(sys.stderr)
    handler.addFilter(_RequestIdDefault())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
