"""The gateway app in the test's own process, behind aiohttp's test client.

``make_gateway`` (tests/conftest.py) builds one from ``config_data``; these
are the types the tests name it by.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]

# make_gateway(upstream_url, *, store=None, **sections) -> Client
GatewayFactory = Callable[..., Awaitable[Client]]
