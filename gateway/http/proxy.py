"""9. Proxy: the handler at the end of the chain, forwarding to the backend."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict

from gateway.authn.identity import identity_headers
from gateway.http.hop_by_hop import end_to_end
from gateway.http.public_links import FORWARDING_HEADERS, PublicLinks
from gateway.http.upstream import UpstreamClient
from gateway.middleware.context import RequestContext, append_header_value, context_of

log = logging.getLogger("gateway.http.proxy")

_APPENDED = frozenset({"via"})
# A version document is a few hundred bytes; more is not one.
MAX_DISCOVERY_BYTES = 1 << 20


def upstream_request_headers(
    ctx: RequestContext,
    role_mapping: Mapping[str, Sequence[str]] | None = None,
    forwarded: Mapping[str, str] | None = None,
) -> CIMultiDict[str]:
    """The client's cleaned headers, then ours: identity, request id, Via, X-Forwarded-*."""
    headers = CIMultiDict(ctx.forward_headers)
    for name in FORWARDING_HEADERS:
        headers.popall(name, None)
    if ctx.identity is not None:
        headers.update(identity_headers(ctx.identity, ctx.request_id, role_mapping))
    else:
        # Version discovery: no caller to speak for, only the request id.
        headers["X-OpenStack-Request-Id"] = ctx.request_id
    headers.update(forwarded or {})
    for name, value in ctx.upstream_headers.items():
        if name.lower() in _APPENDED:
            append_header_value(headers, name, value)
        else:
            headers[name] = value
    return headers


class _UpstreamCutShort(Exception):
    """The backend's body ended early, after our headers were sent."""


def upstream_path(template: str, params: Mapping[str, str]) -> str:
    """The backend path, each parameter quoted as one path segment: a tag
    or member id that decoded to "/" or "?" must not reach another resource."""
    return template.format(**{name: quote(value, safe="") for name, value in params.items()})


class Proxy:
    def __init__(
        self,
        upstream: UpstreamClient,
        links: PublicLinks,
        role_mapping: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.upstream = upstream
        self.links = links
        self.role_mapping = role_mapping or {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        assert ctx.route is not None
        assert ctx.route.upstream_path is not None
        path = upstream_path(ctx.route.upstream_path, ctx.params)
        url = self.upstream.base_url + path
        if request.query_string:
            url += "?" + request.query_string
        headers = upstream_request_headers(
            ctx, self.role_mapping, self.links.forwarded_headers(request)
        )
        data: bytes | aiohttp.StreamReader | None = None
        if ctx.body is not None:
            data = ctx.body
        elif request.body_exists:
            data = request.content
        sent = time.monotonic()
        try:
            async with self.upstream.session.request(
                request.method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
            ) as upstream_response:
                ctx.upstream_status = upstream_response.status
                ctx.upstream_seconds = time.monotonic() - sent
                if upstream_response.status >= 400 and not self.upstream.config.pass_through_errors:
                    raise await self.upstream.error_fault(upstream_response)
                return await self._relay(request, upstream_response, ctx)
        except (aiohttp.ClientError, TimeoutError) as exc:
            ctx.upstream_seconds = time.monotonic() - sent
            log.warning(
                "upstream %s %s failed: %r",
                request.method,
                path,
                exc,
                extra={"request_id": ctx.request_id},
            )
            raise self.upstream.transport_fault(exc) from None

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, ctx: RequestContext
    ) -> web.StreamResponse:
        headers = end_to_end(upstream.headers)
        base = self.links.base(request)
        if "Location" in headers:
            headers["Location"] = self.links.rewrite(headers["Location"], base)
        assert ctx.route is not None
        if ctx.route.discovery:
            return await self._relay_document(upstream, headers, base)
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=headers
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        try:
            await response.prepare(request)
            while chunk := await self._read(upstream):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            # The client hung up; nothing is wrong upstream. (aiohttp's
            # ClientConnectionResetError is also a ConnectionError, which is
            # why this is caught here and not left to the upstream handler.)
            log.info("client went away mid-response", extra={"request_id": ctx.request_id})
        except _UpstreamCutShort as exc:
            # Headers are gone already: all that is left is to cut the
            # connection so the client sees a truncated body, not a short one.
            log.warning(
                "upstream body cut short: %r", exc.__cause__, extra={"request_id": ctx.request_id}
            )
            response.force_close()
        return response

    async def _relay_document(
        self, upstream: aiohttp.ClientResponse, headers: CIMultiDict[str], base: str
    ) -> web.Response:
        """A version document, read whole (it is small) to rewrite its links."""
        try:
            body = await upstream.content.read(MAX_DISCOVERY_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.upstream.transport_fault(exc) from None
        if len(body) > MAX_DISCOVERY_BYTES:
            raise self.upstream.unavailable(
                "The image service's version document is too large.", "invalid_response"
            )
        body = self.links.rewrite_document(body, base) or body
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=body
        )

    @staticmethod
    async def _read(upstream: aiohttp.ClientResponse) -> bytes:
        try:
            return await upstream.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _UpstreamCutShort from exc
