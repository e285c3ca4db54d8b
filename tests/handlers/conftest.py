"""What answers at the end of the chain runs under uvloop in the gateway and
asyncio's own loop elsewhere (the proxy through the upstream client, GET
/limits through the limiter's Redis connection): test both, as tests/http does."""

from tests.http.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
