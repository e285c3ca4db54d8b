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
        # One retry, no backoff (enough to follow a slot that moved): a dead
        # node is the failure mode's business, not a reason to hold the
        # request through a series of retries.
        retry = Retry(NoBackoff(), retries=1)
        return RedisCluster(startup_nodes=nodes, retry=retry, **timeouts)
    assert config.url is not None
    if config.url.startswith("redis+sentinel://"):
        sentinels, master, db = sentinel_parts(config.url)
        # Asking a sentinel where the master is happens outside the callers'
        # timeouts, so it is bounded here.
        ask = {"socket_timeout": config.timeout, "socket_connect_timeout": config.timeout}
        sentinel = Sentinel(sentinels, sentinel_kwargs=ask, db=db, **timeouts)  # type: ignore[no-untyped-call]
        master_client: aioredis.Redis = sentinel.master_for(master)
        return master_client
    return aioredis.from_url(config.url, **timeouts)


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)
