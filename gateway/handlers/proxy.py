"""Proxy: the handler at the end of the chain, forwarding to the backend.

Image bytes that byte rules count move only once reserved
(gateway/ratelimit/byte_budget.py): an upload's body carries the request's
budget as its meter, which the upstream client asks before it sends bytes
past what is reserved; a download's body is reserved before the answer
starts (its length, or a first slice) and slice by slice as it is relayed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from aiohttp import web
from multidict import CIMultiDict

from gateway.authn.identity import IdentityHeaders
from gateway.http.client import (
    BodyOverLimit,
    BodyRefused,
    RequestBodyError,
    StreamedBody,
    UpstreamError,
    UpstreamResponse,
)
from gateway.http.faults import GatewayFault
from gateway.http.header_boundary import relayable
from gateway.http.public_links import PublicLinks
from gateway.http.request_body import image_too_large
from gateway.http.request_target import path_segment
from gateway.http.routes import IMAGE_DOWNLOAD_ROUTES
from gateway.http.upstream import UpstreamClient
from gateway.ratelimit.byte_budget import BudgetRefused, ByteBudget
from gateway.ratelimit.limiter import LimiterUnavailable
from gateway.request_context import (
    RequestContext,
    append_header_value,
    context_of,
    run_before_send,
)

log = logging.getLogger("gateway.handlers.proxy")

_APPENDED = frozenset({"via"})
# A version document is a few hundred bytes; more is not one.
MAX_DISCOVERY_BYTES = 1 << 20


def upstream_request_headers(
    ctx: RequestContext,
    identity_headers: IdentityHeaders,
    forwarded: Mapping[str, str] | None = None,
) -> CIMultiDict[str]:
    """The client's cleaned headers, then ours: identity, request id, Via, X-Forwarded-*."""
    # The header boundary kept no forwarding header and no Expect: ours to write.
    headers = CIMultiDict(ctx.forward_headers)
    if ctx.identity is not None:
        headers.update(identity_headers(ctx.identity))
    # The request id comes with the chain's own headers (the request-id step),
    # version discovery included, where there is no caller to speak for.
    headers.update(forwarded or {})
    for name, value in ctx.upstream_headers.items():
        if name.lower() in _APPENDED:
            append_header_value(headers, name, value)
        else:
            headers[name] = value
    return headers


def upstream_target(ctx: RequestContext, request: web.Request) -> str:
    """The path and query the request goes to on the backend, encoded for the wire."""
    assert ctx.route is not None
    assert ctx.route.upstream_path is not None
    target = ctx.route.upstream_path.format(
        **{name: path_segment(value) for name, value in ctx.params.items()}
    )
    # Raw, as the client sent it: decoding and encoding again could change it.
    query = request.rel_url.raw_query_string
    return f"{target}?{query}" if query else target


def _cut(request: web.Request, response: web.StreamResponse) -> None:
    """End a response whose headers went, so that the client sees it cut.

    Closing after it is not enough: aiohttp ends a response the handler
    left open, which for a chunked body sends the last chunk, and a short
    body would read as whole.
    """
    response.force_close()
    if request.transport is not None:
        request.transport.abort()


class Proxy:
    def __init__(
        self,
        upstream: UpstreamClient,
        links: PublicLinks,
        role_mapping: Mapping[str, Sequence[str]] | None = None,
        max_image_bytes: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.links = links
        self.identity_headers = IdentityHeaders(role_mapping or {})
        # Image data is the only body streamed (JSON is read and checked by
        # the routing step): counted as it flows, cut past this.
        self.max_image_bytes = max_image_bytes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = context_of(request)
        ctx.step = "proxy"
        target = upstream_target(ctx, request)
        body: bytes | StreamedBody | None = ctx.body
        if body is None and request.body_exists:
            body = StreamedBody(
                request.content.iter_any(),
                request.content_length,
                self.max_image_bytes,
                ctx.byte_budget,
            )
        expect_continue = request.headers.get("Expect", "").lower() == "100-continue"
        base = self.links.base(request)
        headers = upstream_request_headers(
            ctx, self.identity_headers, self.links.forwarded_headers(request, base)
        )
        sent = time.monotonic()
        try:
            upstream_response = await self.upstream.request(
                request.method, target, headers, body, expect_continue=expect_continue
            )
        except UpstreamError as exc:
            ctx.upstream_seconds = time.monotonic() - sent
            # Logged as the backend's outage: its first failure, then a count.
            self.upstream.outage.failed(f"{request.method} {target}: {exc}", ctx.request_id)
            raise self.upstream.transport_fault(exc) from None
        except BodyOverLimit as exc:
            ctx.upstream_seconds = time.monotonic() - sent
            log.warning("image data over %d bytes: the upload to the backend was cut",
                        exc.limit, extra={"request_id": ctx.request_id})  # fmt: skip
            # The rest of the body is not wanted: answer, and close after it.
            size = f"More than {exc.limit} bytes"
            raise image_too_large(size, exc.limit, close_connection=True) from None
        except BodyRefused as exc:
            ctx.upstream_seconds = time.monotonic() - sent
            log.info("the upload to the backend was cut: %s", exc.__cause__ or exc,
                     extra={"request_id": ctx.request_id})  # fmt: skip
            # Why (a budget that holds no more) is the rate-limit step's to answer.
            raise exc.__cause__ or exc from None
        except RequestBodyError as exc:
            ctx.upstream_seconds = time.monotonic() - sent
            log.info(
                "request body not received whole: %s", exc, extra={"request_id": ctx.request_id}
            )
            fault = GatewayFault(400, "The request body could not be read.", details=str(exc))
            raise fault from None
        if self.upstream.outage.since is not None:
            self.upstream.outage.recovered()
        try:
            ctx.upstream_status = upstream_response.status
            ctx.upstream_seconds = time.monotonic() - sent
            if ctx.byte_budget is not None and upstream_response.status >= 400:
                # An upload the backend refused stored nothing.
                ctx.byte_budget.forgive()
            if upstream_response.status >= 400 and not self.upstream.config.pass_through_errors:
                raise await self.upstream.error_fault(upstream_response)
            return await self._relay(request, upstream_response, ctx, base)
        finally:
            upstream_response.release()

    async def _relay(
        self, request: web.Request, upstream: UpstreamResponse, ctx: RequestContext, base: str
    ) -> web.StreamResponse:
        headers = relayable(upstream.headers)
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
        budget = ctx.byte_budget
        if (
            budget is not None
            and 200 <= upstream.status < 300
            and ctx.route.name in IMAGE_DOWNLOAD_ROUTES
        ):
            # Image data: reserved before the answer starts, so that over
            # budget the 413 goes instead.
            if upstream.content_length is None:
                await budget.reserve_slice()
            elif upstream.content_length:
                await budget.reserve(upstream.content_length)
        else:
            budget = None
        run_before_send(ctx, response)
        try:
            await response.prepare(request)
            if budget is None:
                while chunk := await upstream.read_chunk():
                    await response.write(chunk)
            else:
                await self._relay_counted(response, upstream, budget)
            await response.write_eof()
        except (BudgetRefused, LimiterUnavailable) as exc:
            # A body of unknown length the budgets hold no more of, past its
            # start: the client sees a cut body, never a short whole one.
            log.info("download cut: %s", exc, extra={"request_id": ctx.request_id})
            _cut(request, response)
        except ConnectionError:
            # The client hung up; nothing is wrong upstream. (aiohttp's
            # ClientConnectionResetError is also a ConnectionError.)
            log.info("client went away mid-response", extra={"request_id": ctx.request_id})
        except (UpstreamError, RequestBodyError) as exc:
            # Headers are gone already: all that is left is to cut the
            # connection so the client sees a truncated body, not a short one
            # (an upload over the limit after the backend answered, too).
            log.warning("upstream body cut short: %r", exc, extra={"request_id": ctx.request_id})
            _cut(request, response)
        return response

    @staticmethod
    async def _relay_counted(
        response: web.StreamResponse, upstream: UpstreamResponse, budget: ByteBudget
    ) -> None:
        """The body, each chunk reserved before it goes and counted once it went;
        refused, what was reserved of the chunk still goes."""
        while chunk := await upstream.read_chunk():
            through = budget.moved + len(chunk)
            if through > budget.reserved:
                try:
                    await budget.cover(through)
                except BudgetRefused:
                    covered = budget.reserved - budget.moved
                    if covered > 0:
                        await response.write(chunk[:covered])
                        budget.moved = budget.reserved
                    raise
            await response.write(chunk)
            budget.moved = through

    async def _relay_document(
        self, upstream: UpstreamResponse, headers: CIMultiDict[str], base: str
    ) -> web.Response:
        """A version document, read whole (it is small) to rewrite its links."""
        try:
            body = await upstream.read(MAX_DISCOVERY_BYTES + 1)
        except UpstreamError as exc:
            raise self.upstream.transport_fault(exc) from None
        if len(body) > MAX_DISCOVERY_BYTES:
            raise self.upstream.unavailable(
                "The image service's version document is too large.", "invalid_response"
            )
        body = self.links.rewrite_document(body, base) or body
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=body
        )
