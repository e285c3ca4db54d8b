"""What every middleware of the chain is: a callable object aiohttp accepts."""

from __future__ import annotations

from typing import ClassVar

from aiohttp import web

from gateway.http.routes import Handler


class Middleware:
    # aiohttp's marker for a new-style middleware, which @web.middleware
    # would set on a function.
    __middleware_version__: ClassVar[int] = 1

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raise NotImplementedError
