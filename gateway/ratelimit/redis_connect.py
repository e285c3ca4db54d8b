"""One Redis client for the configured topology: standalone, Sentinel or Cluster.

Connecting is bounded by the configured timeout. Replies are not bounded
per reply: every caller wraps its whole exchange in ``asyncio.timeout``
instead, because redis-py arms one timer per reply, which in a pipeline of
hundreds of checks costs more than the checks themselves.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from gateway.config import RedisConfig, host_port, sentinel_parts

RedisClient = aioredis.Redis | RedisCluster

# What a client raises when Redis cannot answer. A cluster with no reachable
# node raises RedisClusterException, which is not a RedisError.
REDIS_FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)


def connect(config: RedisConfig) -> RedisClient:
    timeouts: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": config.timeout}
    if config.cluster_nodes is not None:
        nodes = [ClusterNode(*host_port(node)) for node in config.cluster_nodes]
        return RedisCluster(startup_nodes=nodes, retry=_reconnect_once(), **timeouts)
    assert config.url is not None
    if config.url.startswith("redis+sentinel://"):
        sentinels, master, db = sentinel_parts(config.url)
        # Asking a sentinel where the master is happens outside the callers'
        # timeouts, so it is bounded here.
        ask = {"socket_timeout": config.timeout, "socket_connect_timeout": config.timeout}
        sentinel = Sentinel(sentinels, sentinel_kwargs=ask, db=db, **timeouts)  # type: ignore[no-untyped-call]
        master_client: aioredis.Redis = sentinel.master_for(master, retry=_reconnect_once())
        return master_client
    return aioredis.from_url(config.url, retry=_reconnect_once(), **timeouts)


def _reconnect_once() -> Retry:
    # One retry at once on a fresh connection: enough for a pooled connection
    # a restarted Redis closed (or a slot that moved), where redis-py's default
    # backoff would sleep past the caller's timeout and look like an outage.
    # A dead Redis is the failure mode's business, not a reason to hold the
    # request through a series of retries.
    return Retry(NoBackoff(), retries=1)


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)
