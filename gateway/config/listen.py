"""The ``listen`` and ``via`` sections: where the gateway serves and what it calls itself."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from gateway.config._base import PositiveFloat, PositiveInt, _Section
from gateway.config.tls import ListenerTlsConfig
from gateway.cpu_quota import CGROUP_ROOT, cgroup_cpu_limit
from gateway.http.public_links import check_public_url

# RFC 9110 token characters: the pseudonym appears bare in a Via header.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use: the cores it may run on (a container's
    CPU set, not the host's), or fewer when its cgroup's CPU quota says so."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit(cgroup_root)
    return cores if quota is None else min(cores, quota)


def worker_count(value: Any) -> Any:
    """``auto`` is one worker per available CPU; anything else is validated as given."""
    return available_cores() if value == "auto" else value


class ListenConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    # A number, or "auto": one per available CPU (the cores it may run on,
    # or its cgroup's CPU quota rounded up when that is fewer).
    workers: PositiveInt = 1
    # The event loop of each worker: uvloop, or asyncio's own when false.
    uvloop: bool = True
    shutdown_timeout: PositiveFloat = 10.0
    # What one client may hold (gateway.http.protocol): seconds from a
    # request's first byte to the end of its headers, seconds a connection
    # may sit idle between requests, and open connections per worker (past
    # it the connection waiting longest for a request head is closed to make
    # room, or, every one being in a request, the new one is answered 503).
    # Keep max_connections under the worker's descriptor limit (ulimit -n),
    # which upstream and Redis connections share.
    header_read_timeout: PositiveFloat = 15.0
    keepalive_timeout: PositiveFloat = 60.0
    max_connections: PositiveInt = 1000
    # Request heads one client address may have part-way sent at once; past
    # it, that client's oldest is closed (503), so one host cannot fill the
    # worker with half-sent requests.
    max_unfinished_heads_per_client: PositiveInt = 16
    # The gateway's address as clients reach it, scheme://host[:port][/path]:
    # links in version documents and Location headers point here. Unset,
    # they point at the scheme and Host of each request, once the Host is
    # checked to be a plain host[:port].
    public_url: str | None = None
    # Serve HTTPS with this certificate (SIGHUP loads it again); plain HTTP unset.
    tls: ListenerTlsConfig | None = None

    @field_validator("public_url")
    @classmethod
    def _is_base_url(cls, value: str | None) -> str | None:
        return None if value is None else check_public_url(value).rstrip("/")

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: Any) -> Any:
        return worker_count(value)


class ViaConfig(_Section):
    pseudonym: str = "image-gateway"

    @field_validator("pseudonym")
    @classmethod
    def _is_token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError("must be an RFC 9110 token (letters, digits, -._~ and similar)")
        return value
