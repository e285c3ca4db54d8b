from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.integration.glance import Glance, run_glance


@pytest.fixture(scope="session")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glance]:
    """One real Glance for the session; each test makes its own images."""
    yield from run_glance(tmp_path_factory.mktemp("glance"), free_port())
