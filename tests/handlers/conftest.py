"""The proxy forwards through the upstream client, which runs under uvloop in
the gateway and asyncio's own loop elsewhere: test both, as tests/http does."""

from tests.http.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
