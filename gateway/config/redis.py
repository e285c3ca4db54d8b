"""The ``redis`` subsection shared by ``rate_limit`` and ``revocation``: one topology
(standalone, Sentinel or Cluster) and how to reach it."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.config._base import PositiveFloat, PositiveInt, _Section


class RedisConfig(_Section):
    # Standalone (redis://, rediss://, unix://) or Sentinel
    # (redis+sentinel://host:port[,host:port...]/master_name[/db]); or
    # cluster_nodes (host:port seeds) for a Redis Cluster. Exactly one.
    url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix|redis\+sentinel)://")
    cluster_nodes: list[str] | None = Field(default=None, min_length=1)
    # A limiter that waits on a slow Redis slows every request; past this the
    # failure mode decides.
    timeout: PositiveFloat = 0.25
    key_prefix: str = "igw"
    # While Redis is down requests skip it; it is probed this often so that
    # the gateway returns to it on its own.
    probe_interval: PositiveFloat = 0.25
    # The breaker opens after this many consecutive failed round trips within
    # breaker_window seconds: one slow reply is not an outage.
    breaker_failures: PositiveInt = 3
    breaker_window: PositiveFloat = 5.0
    # Per-tenant overrides are re-read this often by every replica.
    overrides_refresh: PositiveFloat = 0.5

    @field_validator("cluster_nodes")
    @classmethod
    def _host_ports(cls, value: list[str] | None) -> list[str] | None:
        for node in value or []:
            host_port(node)
        return value

    @model_validator(mode="after")
    def _one_topology(self) -> Self:
        if (self.url is None) == (self.cluster_nodes is None):
            raise ValueError("give exactly one of url and cluster_nodes")
        if self.url is not None and self.url.startswith("redis+sentinel://"):
            sentinel_parts(self.url)
        return self


def host_port(node: str) -> tuple[str, int]:
    """``"redis-1:6379"`` -> ``("redis-1", 6379)``."""
    host, _, port = node.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{node!r} is not host:port")
    return host, int(port)


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``redis+sentinel://h1:26379,h2:26379/master/0`` -> sentinels, master, db."""
    rest = url.removeprefix("redis+sentinel://")
    hosts, _, path = rest.partition("/")
    master, _, db = path.partition("/")
    if not master:
        raise ValueError("a redis+sentinel:// url needs the master name: .../master_name[/db]")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    return [host_port(node) for node in hosts.split(",")], master, int(db or 0)
