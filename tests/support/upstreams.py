"""An upstream whose answer each test sets, on a real socket (``scripted`` fixture)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class ScriptedUpstream:
    """An upstream whose answer each test sets; it records what arrives."""

    status: int = 204
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    received: list[web.Request] = field(default_factory=list)
    # The body of each request received, in order.
    bodies: list[bytes] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(request)
        self.bodies.append(await request.read())
        if self.hang:
            await self.release.wait()
        return web.Response(
            status=self.status,
            body=self.body if self.status != 204 else None,
            content_type=self.content_type if self.status != 204 else None,
            headers=self.headers,
        )
