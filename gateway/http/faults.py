"""The fault catalog: every error the gateway answers with, in one place.

Bodies follow the Rackspace/OpenStack compute fault style so that clients
written against Cloud Images or Nova parse them unchanged::

    {"overLimit": {"code": 413, "message": "...", "details": "...",
                   "retryAfter": "2026-11-29T10:00:05Z"}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from aiohttp import web

FAULT_NAMES: Mapping[int, str] = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    500: "apiFault",
    502: "serviceUnavailable",
    503: "serviceUnavailable",
    504: "serviceUnavailable",
    508: "loopDetected",
}

# A status the catalog does not name still gets an envelope; the name then
# follows the status class so that clients can branch on it.
_CLASS_NAMES: Mapping[int, str] = {4: "badRequest", 5: "apiFault"}


def fault_name(status: int) -> str:
    return FAULT_NAMES.get(status) or _CLASS_NAMES.get(status // 100, "apiFault")


class GatewayFault(Exception):
    """Raised anywhere in the chain; the fault-envelope middleware renders it.

    ``retry_after`` is in seconds; it becomes both the ``Retry-After``
    header and the ISO-8601 ``retryAfter`` member of the body. ``cause`` is
    for operators, never the client: what failed underneath (for example
    ``upstream_timeout``), counted in metrics and written to the access log.
    ``close_connection``: the connection closes after this answer (what the
    client is still sending, the rest of a body refused, is not wanted).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: str = "",
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        cause: str | None = None,
        close_connection: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.retry_after = retry_after
        self.cause = cause
        self.close_connection = close_connection

    def __repr__(self) -> str:
        return f"GatewayFault({self.status}, {self.message!r})"


def fault_body(
    status: int, message: str, details: str = "", retry_after_at: datetime | None = None
) -> dict[str, dict[str, object]]:
    inner: dict[str, object] = {"code": status, "message": message}
    if details:
        inner["details"] = details
    if retry_after_at is not None:
        inner["retryAfter"] = retry_after_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {fault_name(status): inner}


def fault_json(body: Mapping[str, object]) -> bytes:
    """A fault body as JSON whose bytes hold no ``<``, ``>`` or ``&``.

    They go as JSON escapes (``\\u003c``): a JSON parser reads back the same
    text, so a client prints the message as it was, while a browser that
    renders or sniffs the body as HTML, or a page that inlines it in a
    script element, finds no markup in it. HTML entities would show as
    ``&lt;`` in every client and be escaped twice by any page that escapes.
    """
    text = json.dumps(body)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def render_fault(fault: GatewayFault, now: datetime | None = None) -> web.Response:
    headers = dict(fault.headers)
    retry_after_at = None
    if fault.retry_after is not None:
        # Retry-After is whole seconds (RFC 9110); round up so a client that
        # obeys it is never early.
        seconds = max(1, int(-(-fault.retry_after // 1)))
        headers["Retry-After"] = str(seconds)
        retry_after_at = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    body = fault_body(fault.status, fault.message, fault.details, retry_after_at)
    response = web.Response(
        status=fault.status,
        body=fault_json(body),
        content_type="application/json",
        headers=headers,
    )
    if fault.close_connection:
        response.force_close()
    return response
