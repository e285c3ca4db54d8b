"""Which event loop a worker runs on."""

from __future__ import annotations

import asyncio

import uvloop

from gateway.config import parse_config
from gateway.runtime.server import event_loop_factory
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys


def test_workers_run_on_uvloop_unless_turned_off(keys: Keys) -> None:
    on = parse_config(config_data("http://127.0.0.1:1", keys))
    factory = event_loop_factory(on)
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    off = parse_config(config_data("http://127.0.0.1:1", keys, listen={"uvloop": False}))
    assert event_loop_factory(off) is None
    with asyncio.Runner(loop_factory=event_loop_factory(off)) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)
