"""The image backend: one pooled client session per process, and its faults.

Transport failures (refused, reset, timed out) become 503 for the client, or
502/504 when the operator asks for them to be passed. Errors the backend
answers keep their status, with the body rewritten into the fault envelope.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict

from gateway.config import UpstreamConfig
from gateway.http.faults import GatewayFault

_HIDDEN_HTML = re.compile(r"<(head|title|h1|script|style)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_MAX_MESSAGE = 500

# Fault causes, by what went wrong underneath; metrics count them by kind.
UPSTREAM_CAUSE_PREFIX = "upstream_"


def transport_error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "disconnected"
    return "protocol"


def upstream_message(body: bytes, content_type: str) -> str:
    """The human message inside a backend error body, whatever its format."""
    text = body.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        message = _json_message(data)
        if message:
            return message[:_MAX_MESSAGE]
    text = _TAG.sub(" ", _HIDDEN_HTML.sub(" ", text))
    return _SPACE.sub(" ", html.unescape(text)).strip()[:_MAX_MESSAGE]


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


class UpstreamClient:
    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.base_url = config.url
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the upstream session is opened on app start-up")
        return self._session

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections,
            keepalive_timeout=self.config.keepalive_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.connect_timeout,
                sock_read=self.config.read_timeout,
            ),
            # The client's own headers are what we forward; add nothing.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

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
        if kind == "timeout":
            return self.unavailable("The image service timed out.", kind)
        return self.unavailable(f"The image service failed ({type(exc).__name__}).", kind)

    async def error_fault(self, response: aiohttp.ClientResponse) -> GatewayFault:
        """Read a backend error (bounded) and turn it into our fault."""
        body = await response.content.read(self.config.max_error_body_bytes)
        message = upstream_message(body, response.headers.get("Content-Type", ""))
        status = response.status
        if status in (502, 504) and not self.config.pass_gateway_errors:
            status = 503
        return GatewayFault(
            status,
            message or response.reason or "The image service refused.",
            cause=UPSTREAM_CAUSE_PREFIX + "http_5xx" if response.status >= 500 else None,
        )

    async def get_json(
        self, path: str, headers: Mapping[str, str] | CIMultiDict[str]
    ) -> tuple[int, Any]:
        """GET a small JSON document; transport failures become faults."""
        try:
            async with self.session.get(self.base_url + path, headers=headers) as response:
                if response.status >= 400:
                    return response.status, None
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.transport_fault(exc) from None
        except ValueError:
            raise self.unavailable(
                "The image service answered with invalid JSON.", "invalid_response"
            ) from None
