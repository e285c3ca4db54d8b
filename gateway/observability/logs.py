"""Log set-up: every line carries the request id it belongs to.

In JSON format (the default) each record is one object per line; a record
logged with ``extra={"fields": ...}`` (the access log) carries that
object's fields at the top level, for log shippers to index. The object
brings them already serialized (``fields_json``, gateway.observability.records),
so the access line reuses the request record's one JSON text.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol, TextIO

import orjson


@lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def utc_iso_ms(timestamp: float) -> str:
    """``datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")``,
    the same text, with the date and time formatted once a second, not twice
    a request (the access line and the audit record each carry one)."""
    seconds = int(timestamp)
    # Rounded to the microsecond as datetime rounds, then cut to the millisecond.
    micro = round((timestamp - seconds) * 1e6)
    if micro >= 1_000_000:
        seconds, micro = seconds + 1, micro - 1_000_000
    return f"{_utc_second(seconds)}.{micro // 1000:03d}+00:00"


class RequestIdDefault(logging.Filter):
    """Gives a line logged outside any request the request id ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        return True


class SerializedFields(Protocol):
    @property
    def fields_json(self) -> str:
        """A JSON object whose keys are none of a line's own (time, level,
        logger, request_id, message, exception)."""


# JSON lets U+2028 and U+2029 stand raw in a string, and orjson writes them
# so; but Python's str.splitlines() and JavaScript break lines at them, so a
# path carrying one (sent percent-encoded) would read there as two lines of
# an access log or audit trail. Every JSON line escapes them.
_LINE_SEPARATORS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029"})


def one_line(text: str) -> str:
    """``text`` (JSON) with U+2028 and U+2029 escaped; ASCII text, the common
    case, is returned as it is after one flag check."""
    return text if text.isascii() else text.translate(_LINE_SEPARATORS)


def json_line(
    at: str,
    level: str,
    logger: str,
    request_id: str,
    message: str,
    fields: SerializedFields | None = None,
    exception: str | None = None,
) -> str:
    """One JSON log line: its own keys, then ``fields``' (already serialized).

    ``at`` is the line's time as ``utc_iso_ms`` writes it."""
    line: dict[str, Any] = {
        "time": at,
        "level": level,
        "logger": logger,
        "request_id": request_id,
        "message": message,
    }
    if exception is not None:
        line["exception"] = exception
    text = one_line(orjson.dumps(line, default=str).decode())
    if fields is None:
        return text
    extra = fields.fields_json
    return text if extra == "{}" else text[:-1] + "," + extra[1:]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json_line(
            utc_iso_ms(record.created),
            record.levelname,
            record.name,
            getattr(record, "request_id", "-"),
            record.getMessage(),
            getattr(record, "fields", None),
            self.formatException(record.exc_info) if record.exc_info else None,
        )


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
        # The loop whose turn the pending lines wait for.
        self._loop: asyncio.AbstractEventLoop | None = None
        # The loop lines last came from and the thread running it: asking
        # asyncio for the running loop is a system call (getpid) on Python
        # 3.11, once per access line; a thread running a loop runs nothing
        # but that loop, so the thread and the loop still running say as much.
        self._home: tuple[asyncio.AbstractEventLoop, int] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line)

    def write_line(self, line: str) -> None:
        """A line formatted elsewhere, batched and ordered like every other."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line)

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        home = self._home
        if home is not None and home[1] == threading.get_ident() and home[0].is_running():
            return home[0]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._home = None
            return None
        self._home = (loop, threading.get_ident())
        return loop

    def _add(self, line: str) -> None:
        loop = self._running_loop()
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
    handler.addFilter(RequestIdDefault())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
