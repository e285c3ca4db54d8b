"""The image backend: one lean keep-alive client per process, and its faults.

Transport failures (refused, reset, timed out) become 503 for the client, or
502/504 when the operator asks for them to be passed. Errors the backend
answers keep their status, with the body rewritten into the fault envelope.
"""

from __future__ import annotations

import html
import json
import logging
import re
import ssl
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

import orjson
from multidict import CIMultiDict

from gateway.http.client import (
    HttpClient,
    RequestBody,
    UpstreamError,
    UpstreamResponse,
)
from gateway.http.faults import GatewayFault
from gateway.observability.outages import Outage

log = logging.getLogger("gateway.upstream")

_HIDDEN_HTML = re.compile(r"<(head|title|h1|script|style)\b.*?</\1\s*>", re.I | re.S)
# What an HTML parser reads as opening a tag, an end tag, a comment or a
# declaration: "<" and a letter, "/", "!" or "?" ("a < b" is text). A tag
# is taken out whole; a "<" left opening one (unclosed, or in a run of
# "<" before one) is dropped.
_TAG = re.compile(r"<[A-Za-z/!?][^>]*>")
_TAG_OPEN = re.compile(r"<(?=[<A-Za-z/!?])")
# Entities encoded this many times over are decoded; what is left after that
# is plain text (an "&lt;" at worst), never a tag.
_MAX_UNESCAPES = 4
_SPACE = re.compile(r"\s+")
# webob's plain-text error bodies start with the status line: "403 Forbidden".
_STATUS_LINE = re.compile(r"^\s*[1-5]\d\d [A-Za-z][A-Za-z '\-]*(?:\r?\n|$)")
_MAX_MESSAGE = 500
# An image document or member record is a few KB; a body past this is not one.
_MAX_JSON_BYTES = 1 << 20

# Fault causes, by what went wrong underneath; metrics count them by kind.
UPSTREAM_CAUSE_PREFIX = "upstream_"


def transport_error_kind(exc: BaseException) -> str:
    if isinstance(exc, UpstreamError):
        return exc.kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "protocol"


def transport_error_details(kind: str, exc: BaseException) -> str:
    """What the client is told of a transport failure of ``kind``."""
    if kind == "timeout":
        return "The image service timed out."
    if kind == "tls":
        return "The image service's TLS connection was refused."
    return f"The image service failed ({type(exc).__name__})."


def upstream_message(body: bytes, content_type: str) -> str:
    """The human message inside a backend error body, whatever its format.

    Glance (webob) wraps its messages in HTML (``<br />``) even inside JSON,
    and starts its plain-text bodies with the status line (``403 Forbidden``):
    both are taken off, so the client reads Glance's sentence alone.
    """
    text = body.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        message = _json_message(data)
        if message:
            text = message
    text = _STATUS_LINE.sub("", text, count=1)
    return plain_text(text)[:_MAX_MESSAGE]


def plain_text(markup: str) -> str:
    """The text of ``markup`` with no tag left in it, however it was encoded.

    Entities are decoded first, then tags are taken out: the other way
    round, ``&lt;img onerror=...&gt;`` came out as a live tag. Whoever shows
    the text escapes it for where it goes (the fault's JSON escapes ``<``,
    ``>`` and ``&``; the dashboard's templates escape HTML).
    """
    for _ in range(_MAX_UNESCAPES):
        decoded = html.unescape(markup)
        if decoded == markup:
            break
        markup = decoded
    text = _TAG.sub(" ", _HIDDEN_HTML.sub(" ", markup))
    return _SPACE.sub(" ", _TAG_OPEN.sub("", text)).strip()


def _json_message(data: Any) -> str | None:
    # Fault envelopes ({"itemNotFound": {"message": ...}}), Glance/webob
    # ({"message": ...}) and the common {"error": {"message": ...}}.
    if isinstance(data, dict):
        for value in (data.get("message"), data.get("error"), *data.values()):
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    return None


class LookupFailed(Exception):
    """A look-up the gateway made for itself (an image's owner) got no usable
    answer; ``kind`` says how, as the fault causes count it. The middleware
    that needed it turns it into the fault (UpstreamClient.lookup_fault)."""

    def __init__(self, details: str, kind: str) -> None:
        super().__init__(details)
        self.details = details
        self.kind = kind


class ClientTlsSettings(Protocol):
    """An https backend's TLS settings (gateway.config.ClientTlsConfig)."""

    def context(self) -> ssl.SSLContext: ...


class UpstreamSettings(Protocol):
    """What the client reads of its configuration; gateway.config.UpstreamConfig has it.

    Declared here rather than imported: the configuration sits above this
    package (it checks route names and header lists against gateway.http).
    """

    @property
    def url(self) -> str: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def keepalive_timeout(self) -> float: ...
    @property
    def pass_through_errors(self) -> bool: ...
    @property
    def pass_gateway_errors(self) -> bool: ...
    @property
    def max_error_body_bytes(self) -> int: ...
    @property
    def tls(self) -> ClientTlsSettings | None: ...


class UpstreamClient:
    """The image backend, on one lean keep-alive client for the whole gateway."""

    def __init__(self, config: UpstreamSettings) -> None:
        self.config = config
        self.base_url = config.url
        self.http = HttpClient(
            config.url,
            max_connections=config.max_connections,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            keepalive_timeout=config.keepalive_timeout,
            ssl_context=config.tls.context() if config.tls is not None else None,
        )
        # Transport failures of the proxied requests and the look-ups alike.
        self.outage = Outage(f"the image service ({config.url})", log)

    async def open(self) -> None:
        # Connections are made on first use; nothing to do before.
        pass

    async def close(self) -> None:
        await self.http.close()

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: RequestBody | None = None,
        *,
        expect_continue: bool = False,
    ) -> Coroutine[Any, Any, UpstreamResponse]:
        """One request, to await; the caller releases the response when done with it."""
        # The client's coroutine itself, not one awaiting it: a request
        # suspends and resumes through one frame fewer.
        return self.http.request(method, target, headers, body, expect_continue=expect_continue)

    def unavailable(self, details: str, kind: str) -> GatewayFault:
        status = 503
        if self.config.pass_gateway_errors:
            status = 504 if kind == "timeout" else 502
        return GatewayFault(
            status,
            "The image service is unavailable.",
            details=details,
            cause=UPSTREAM_CAUSE_PREFIX + kind,
        )

    def transport_fault(self, exc: BaseException) -> GatewayFault:
        kind = transport_error_kind(exc)
        return self.unavailable(transport_error_details(kind, exc), kind)

    async def error_fault(self, response: UpstreamResponse) -> GatewayFault:
        """Read a backend error (bounded) and turn it into our fault."""
        try:
            body = await response.read(self.config.max_error_body_bytes)
        except UpstreamError:
            body = b""  # the status says enough
        message = upstream_message(body, response.headers.get("Content-Type", ""))
        status = response.status
        if status in (502, 504) and not self.config.pass_gateway_errors:
            status = 503
        return GatewayFault(
            status,
            message or response.reason or "The image service refused.",
            cause=UPSTREAM_CAUSE_PREFIX + "http_5xx" if response.status >= 500 else None,
        )

    def lookup_fault(self, failure: LookupFailed) -> GatewayFault:
        """What the client is told when a look-up the gateway needed failed."""
        return self.unavailable(failure.details, failure.kind)

    async def get_json(
        self, path: str, headers: Mapping[str, str] | CIMultiDict[str]
    ) -> tuple[int, Any]:
        """GET a small JSON document for the gateway's own use."""
        try:
            async with await self.http.request("GET", path, headers) as response:
                if self.outage.since is not None:
                    self.outage.recovered()
                if response.status >= 400:
                    return response.status, None
                body = await response.read(_MAX_JSON_BYTES)
            return response.status, orjson.loads(body)
        except UpstreamError as exc:
            kind = transport_error_kind(exc)
            self.outage.failed(f"GET {path}: {exc}", headers.get("X-OpenStack-Request-Id"))
            raise LookupFailed(transport_error_details(kind, exc), kind) from None
        except ValueError:
            raise LookupFailed(
                "The image service answered with invalid JSON.", "invalid_response"
            ) from None

    async def probe(self) -> int:
        """The status the backend answers ``GET /`` with (any answer: it is up)."""
        async with await self.http.request("GET", "/", {}) as response:
            return response.status
