"""Fault envelope: whatever goes wrong below becomes a JSON fault."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.http.faults import GatewayFault, render_fault
from gateway.http.protocol import parse_fault_message
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import context_of

log = logging.getLogger("gateway.http.faults")


class FaultEnvelopeMiddleware(Middleware):
    # Log lines name the path as the client sent it, still percent-encoded: a
    # refused path may decode to a line break (a forged line in a text log).
    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        try:
            return await handler(request)
        except GatewayFault as fault:
            ctx.fault = fault
            log.info(
                "%s %s -> %d %s",
                request.method,
                request.rel_url.raw_path,
                fault.status,
                fault.message,
                extra={"request_id": ctx.request_id, "details": fault.details},
            )
            return render_fault(fault)
        except HttpProcessingError as exc:
            # A request body whose framing breaks while the chain reads it
            # (a bad chunk): the client's error, and its bytes stay out.
            message = parse_fault_message(exc)
            log.info(
                "%s %s -> 400 %s",
                request.method,
                request.rel_url.raw_path,
                message,
                extra={"request_id": ctx.request_id},
            )
            response = render_fault(GatewayFault(400, message))
            # What follows on the connection cannot be framed either.
            response.force_close()
            return response
        except web.HTTPException as exc:
            # aiohttp's own errors (a body over client_max_size, say).
            log.info(
                "%s %s -> %d %s",
                request.method,
                request.rel_url.raw_path,
                exc.status,
                exc.reason,
                extra={"request_id": ctx.request_id},
            )
            return render_fault(GatewayFault(exc.status, exc.reason))
        except Exception:
            # The traceback goes to the log with the request id, never to the
            # client; the id in the response lets an operator find it.
            log.exception(
                "unhandled error in %s %s",
                request.method,
                request.rel_url.raw_path,
                extra={"request_id": ctx.request_id},
            )
            return render_fault(
                GatewayFault(
                    500,
                    "The gateway failed to handle the request.",
                    details=f"Quote request id {ctx.request_id} when reporting this.",
                )
            )
