"""9. Proxy: the handler at the end of the chain, forwarding to the backend."""

from __future__ import annotations

import logging
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.authn.identity import identity_headers
from gateway.http.hop_by_hop import end_to_end
from gateway.http.request_target import raw_query
from gateway.http.upstream import UpstreamClient
from gateway.middleware.context import RequestContext, append_header_value, context_of

log = logging.getLogger("gateway.http.proxy")

_APPENDED = frozenset({"via"})


def upstream_request_headers(ctx: RequestContext) -> CIMultiDict[str]:
    """The client's cleaned headers, then ours: identity, request id, Via."""
    assert ctx.identity is not None
    headers = CIMultiDict(ctx.forward_headers)
    headers.update(identity_headers(ctx.identity, ctx.request_id))
    for name, value in ctx.upstream_headers.items():
        if name.lower() in _APPENDED:
            append_header_value(headers, name, value)
        else:
            headers[name] = value
    return headers


class _UpstreamCutShort(Exception):
    """The backend's body ended early, after our headers were sent."""


class Proxy:
    def __init__(self, upstream: UpstreamClient) -> None:
        self.upstream = upstream

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        assert ctx.route is not None
        assert ctx.route.upstream_path is not None
        path = ctx.route.upstream_path.format(**ctx.params)
        url = self.upstream.base_url + path
        if query := raw_query(request):
            url += "?" + query
        sent = time.monotonic()
        try:
            async with self.upstream.session.request(
                request.method,
                # Already encoded: the client's query goes on byte for byte.
                URL(url, encoded=True),
                headers=upstream_request_headers(ctx),
                data=request.content if request.body_exists else None,
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
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=end_to_end(upstream.headers)
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

    @staticmethod
    async def _read(upstream: aiohttp.ClientResponse) -> bytes:
        try:
            return await upstream.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _UpstreamCutShort from exc
