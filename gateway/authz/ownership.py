"""Who owns an image, asked of the backend with the gateway's own identity.

Answers are cached for a short TTL, and concurrent look-ups of one image
share a single backend request, so a burst of deletes of one image costs
one GET.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial

from gateway.authn.identity import Identity, caller_headers
from gateway.config import UpstreamConfig
from gateway.expiring_lru import ExpiringLRU
from gateway.http.request_target import path_segment
from gateway.http.upstream import LookupFailed, UpstreamClient

# Visibilities under which Glance shows an image to every project.
VISIBLE_TO_ALL = frozenset({"public", "community"})


@dataclass(frozen=True, slots=True)
class ImageRecord:
    owner: str | None
    visibility: str


class ImageOwners:
    def __init__(self, upstream: UpstreamClient, config: UpstreamConfig) -> None:
        self.upstream = upstream
        self.ttl = config.owner_cache_ttl
        self.cache: ExpiringLRU[str, ImageRecord] = ExpiringLRU(config.owner_cache_size)
        service = config.service_identity
        self._service = Identity(
            project_id=service.project_id,
            user_id=service.user_id,
            roles=frozenset(r.lower() for r in service.roles),
        )
        self._in_flight: dict[str, asyncio.Task[ImageRecord | None]] = {}
        # The service's identity never changes: only the request id does.
        self._service_headers = dict(caller_headers(self._service, {}))

    def _headers(self, request_id: str) -> dict[str, str]:
        return {**self._service_headers, "X-OpenStack-Request-Id": request_id}

    async def record(self, image_id: str, request_id: str) -> ImageRecord | None:
        """The image's owner and visibility, or None when it does not exist."""
        cached = self.cache.get(image_id, time.monotonic())
        if cached is not None:
            return cached
        pending = self._in_flight.get(image_id)
        if pending is None:
            # Its own task, not the first caller's: a caller that goes away
            # (cancelled) leaves the look-up running for the others.
            pending = asyncio.get_running_loop().create_task(self._fetch(image_id, request_id))
            self._in_flight[image_id] = pending
            pending.add_done_callback(partial(self._done, image_id))
        return await asyncio.shield(pending)

    def _done(self, image_id: str, task: asyncio.Task[ImageRecord | None]) -> None:
        self._in_flight.pop(image_id, None)
        if not task.cancelled():
            # Retrieved, so asyncio does not warn when every waiter had gone.
            task.exception()

    async def _fetch(self, image_id: str, request_id: str) -> ImageRecord | None:
        status, body = await self.upstream.get_json(
            f"/v2/images/{image_id}", self._headers(request_id)
        )
        if status == 404:
            return None
        if status >= 400 or not isinstance(body, dict):
            # The gateway's own identity was refused: a deployment fault the
            # client cannot fix, so not a 4xx for them.
            raise LookupFailed(
                f"The image owner look-up was answered {status}.", "owner_lookup_refused"
            )
        owner = body.get("owner")
        record = ImageRecord(
            owner=owner if isinstance(owner, str) else None,
            visibility=str(body.get("visibility", "private")),
        )
        if self.ttl > 0:
            self.cache.put(image_id, record, time.monotonic() + self.ttl)
        return record

    async def is_member(self, image_id: str, project_id: str, request_id: str) -> bool:
        status, _ = await self.upstream.get_json(
            f"/v2/images/{image_id}/members/{path_segment(project_id)}", self._headers(request_id)
        )
        return status == 200

    def forget(self, image_id: str) -> None:
        self.cache.discard(image_id)
