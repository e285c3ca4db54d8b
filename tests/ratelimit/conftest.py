"""What the rate-limit tests share: the key a project's deletes are counted in,
and two deletes through a gateway on a given Redis.

The Redis Cluster and the fleets of ``python -m gateway run`` processes are
tests/conftest.py's (``redis_cluster``, ``gateway_processes``): the
integration tests use them too.
"""

from __future__ import annotations

import uuid

from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory

COUNTED_KEY = "igw:window:{project:project-a}:deletes"


async def two_deletes_at_one_per_minute(
    make_gateway: GatewayFactory, upstream_url: str, redis_url: str, token: TokenFactory
) -> tuple[int, int]:
    """Statuses of two deletes by one project through a gateway on this Redis URL."""
    client = await make_gateway(
        upstream_url,
        rate_limit={
            "store": "redis",
            "redis": {"url": redis_url, "timeout": 1},
            "rules": [{"name": "deletes", "unit": "minute", "value": 1}],
        },
    )
    tok = token(roles=["admin"])
    statuses = []
    for _ in range(2):
        response = await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": tok})
        statuses.append(response.status)
    return statuses[0], statuses[1]
