"""The access log: one line per request, made from its record.

When JSON lines go to the gateway's own handler alone (what
``configure_logging`` installs: the shipped set-up), the line is handed
straight to that handler, the same text its formatter would make, without
logging's per-record work (a LogRecord, the caller's frame, a filter pass
and a lock per logger and handler): 19 against 8 CPU-µs a line in one
run of bench/access_line.py here. Any other set-up (text lines, another
handler or filter: a test's log capture, an application embedding the
gateway) gets an ordinary log record on the ``gateway.access`` logger.
"""

from __future__ import annotations

import logging

from gateway.observability.logs import (
    JsonFormatter,
    LoopBatchedHandler,
    RequestIdDefault,
    json_line,
)
from gateway.observability.records import RequestRecord

ACCESS_LOGGER = "gateway.access"


def sole_json_handler(logger: logging.Logger) -> LoopBatchedHandler | None:
    """The one handler an INFO record of ``logger`` would reach, if that is a
    LoopBatchedHandler writing JSON lines and nothing else would see the record."""
    found: LoopBatchedHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not LoopBatchedHandler
                or type(handler.formatter) is not JsonFormatter
                or handler.level > logging.INFO
            ):
                return None
            # A loop, not any() over a generator: this runs for every access line.
            for only in handler.filters:
                if type(only) is not RequestIdDefault:
                    return None
            found = handler
        current = current.parent if current.propagate else None
    return found


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    def write(self, record: RequestRecord) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        fields = record.fields
        handler = sole_json_handler(logger)
        if handler is None:
            logger.info(
                "%s %s %d %s",
                fields["method"],
                fields["path"],
                fields["status"],
                fields["decision"],
                extra={"request_id": record.request_id, "fields": record},
            )
            return
        message = f"{fields['method']} {fields['path']} {fields['status']} {fields['decision']}"
        handler.write_line(
            json_line(record.at(), "INFO", logger.name, record.request_id, message, record)
        )
