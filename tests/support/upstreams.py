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


@dataclass
class Upload:
    """One upload as the backend saw it."""

    received: int = 0
    # Read to its end (a chunked body's last chunk, all of its length).
    whole: bool = False
    # Why it ended early, when it did.
    error: str | None = None


@dataclass
class ImageDataBackend:
    """A backend for image data: uploads read to their end and counted, the
    image served to downloads (with its length, or chunked)."""

    image: bytes = b""
    chunked_downloads: bool = False
    # Answer uploads with this status before reading them.
    refuse_uploads: int | None = None
    uploads: list[Upload] = field(default_factory=list)
    upload_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def upload(self, request: web.Request) -> web.Response:
        if self.refuse_uploads is not None:
            return web.json_response({"message": "refused"}, status=self.refuse_uploads)
        seen = Upload()
        self.uploads.append(seen)
        self.upload_started.set()
        try:
            async for chunk in request.content.iter_any():
                seen.received += len(chunk)
        except Exception as exc:
            seen.error = type(exc).__name__
            raise
        seen.whole = True
        return web.Response(status=204)

    async def download(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if not self.chunked_downloads:
            response.content_length = len(self.image)
        await response.prepare(request)
        for start in range(0, len(self.image), 1 << 16):
            await response.write(self.image[start : start + (1 << 16)])
        await response.write_eof()
        return response

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/v2/images/{image_id}/file", self.upload)
        app.router.add_put("/v2/images/{image_id}/stage", self.upload)
        app.router.add_get("/v2/images/{image_id}/file", self.download)
        return app
