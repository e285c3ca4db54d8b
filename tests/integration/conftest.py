from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.glance import Glance, run_glance
from tests.integration.keystone import Keystone, User, run_keystone
from tests.support.ports import free_port


@pytest.fixture(scope="session")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glance]:
    """One real Glance for the session; each test makes its own images."""
    yield from run_glance(tmp_path_factory.mktemp("glance"), free_port())


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """One real Keystone for the session; each test makes its own users and projects."""
    yield from run_keystone(tmp_path_factory.mktemp("keystone"), free_port())


@pytest.fixture(scope="session")
def gateway_service_user(keystone: Keystone) -> User:
    """The gateway's own Keystone user: the service role lets it validate tokens."""
    return keystone.create_user(keystone.create_project(), ("service",))
