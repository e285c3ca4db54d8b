"""The client runs under uvloop in the gateway and asyncio's own loop elsewhere: test both.

And the image API's routes are tested against a scripted upstream with the
shipped policy (the ``routed`` fixture).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.support import REPO
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.upstreams import ScriptedUpstream


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


# The shipped Rackspace policy: a rule for every route of the image API.
RACKSPACE_POLICY = REPO / "config" / "policy.yaml"


@dataclass
class RoutedGateway:
    client: Client
    upstream: ScriptedUpstream
    upstream_url: str
    audit: Path

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]


RoutedFactory = Callable[..., Awaitable[RoutedGateway]]


@pytest.fixture
def routed(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    tmp_path: Path,
) -> RoutedFactory:
    """The gateway with the shipped policy in front of a scripted upstream,
    auditing to a file; sections override the test configuration."""
    upstream, url = scripted

    async def make(**sections: Any) -> RoutedGateway:
        audit = tmp_path / "audit.jsonl"
        sections.setdefault("authorization", {"policy_file": str(RACKSPACE_POLICY)})
        sections.setdefault("audit", {"sink": str(audit)})
        client = await make_gateway(url, **sections)
        return RoutedGateway(client, upstream, url, audit)

    return make
