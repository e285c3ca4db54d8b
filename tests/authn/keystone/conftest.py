"""The scripted Keystone (tests/support/scripted_keystone.py) as a fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.scripted_keystone import ScriptedKeystone, serve_keystone


@pytest.fixture
async def keystone() -> AsyncIterator[ScriptedKeystone]:
    scripted = ScriptedKeystone()
    server = await serve_keystone(scripted)
    yield scripted
    scripted.answer.set()
    await server.close()
