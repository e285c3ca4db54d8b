"""One Redis client for the configured topology: standalone, Sentinel or Cluster;
and, for the limiter's own connection (redis_pipe.py), where the node is.

Connecting is bounded by the configured timeout. Replies are not bounded
per reply: every caller wraps its whole exchange in ``asyncio.timeout``
instead, because redis-py arms one timer per reply, which in a pipeline of
hundreds of checks costs more than the checks themselves.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    RedisSSLContext,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from gateway.config import RedisConfig, host_port, sentinel_parts
from gateway.redis_pipe import NodeLocator, RedisNode

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


def node_locator(config: RedisConfig, client: RedisClient) -> NodeLocator:
    """Where the single node of a standalone or Sentinel-managed Redis is.

    For Sentinel, ``client`` is the one connect() made: its pool asks the
    sentinels where the master is now.
    """
    assert config.url is not None
    assert isinstance(client, aioredis.Redis)
    if config.url.startswith("redis+sentinel://"):
        _, _, db = sentinel_parts(config.url)
        ask = client.connection_pool

        async def master() -> RedisNode:
            host, port = await ask.get_master_address()  # type: ignore[attr-defined]
            return RedisNode(host=host, port=int(port), db=db)

        return master
    node = _node_of_url(config.url)

    async def fixed() -> RedisNode:
        return node

    return fixed


def _node_of_url(url: str) -> RedisNode:
    # redis-py's own reading of the URL, so that both clients agree on it.
    parts: dict[str, Any] = dict(parse_url(url))
    kind = parts.pop("connection_class", None)
    tls = None
    if kind is SSLConnection:
        tls = RedisSSLContext(
            keyfile=parts.get("ssl_keyfile"),
            certfile=parts.get("ssl_certfile"),
            cert_reqs=parts.get("ssl_cert_reqs", "required"),
            ca_certs=parts.get("ssl_ca_certs"),
            check_hostname=bool(parts.get("ssl_check_hostname", True)),
        ).get()
    return RedisNode(
        host=parts.get("host", "localhost"),
        port=int(parts.get("port", 6379)),
        path=parts["path"] if kind is UnixDomainSocketConnection else None,
        tls=tls,
        username=parts.get("username"),
        password=parts.get("password"),
        db=int(parts.get("db", 0)),
    )
