"""How a serving process runs: its event loop, and what its collector leaves out."""

from __future__ import annotations

import asyncio
import gc
import re
import signal
import weakref
from pathlib import Path

import pytest
import uvloop

from gateway.config import parse_config
from gateway.runtime.server import event_loop_factory, freeze_long_lived
from tests.support.gateway_config import config_data
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import free_port
from tests.support.tokens import Keys
from tests.support.waiting import until


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


def test_freezing_keeps_what_lives_and_collects_what_is_already_garbage() -> None:
    class Node:
        other: Node

    kept = Node()
    garbage = Node()
    garbage.other = Node()
    garbage.other.other = garbage
    gone = weakref.ref(garbage)
    del garbage
    try:
        frozen = freeze_long_lived()
        # The cycle was collected first, not kept out of sight for good.
        assert gone() is None
        assert frozen == gc.get_freeze_count() > 0
        made_after = Node()
        # The collector's passes see what came after, not what lived before.
        watched = {id(o) for o in gc.get_objects()}
        assert id(made_after) in watched
        assert id(kept) not in watched
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("workers", [1, 2])
async def test_each_serving_process_freezes_its_start_up_objects_and_again_on_reload(
    keys: Keys, tmp_path: Path, workers: int
) -> None:
    config = config_data(
        "http://127.0.0.1:1",
        keys,
        listen={"host": "127.0.0.1", "port": free_port(), "workers": workers},
        admin={"port": free_port()},
        logging={"level": "INFO", "format": "text"},
    )
    gateway = await GatewayProcess.run(config, tmp_path).start()
    try:
        frozen = re.compile(r"(\d+) objects made at start-up left out of full collections")
        await until(lambda: len(frozen.findall(gateway.log())) == workers, "every process")
        # A process's modules, configuration and chain: tens of thousands.
        assert all(int(n) > 20_000 for n in frozen.findall(gateway.log()))
        gateway.send_signal(signal.SIGHUP)
        reloaded = re.compile(r"configuration reloaded; (\d+) objects left out")
        await until(lambda: len(reloaded.findall(gateway.log())) == workers, "every reload")
        assert all(int(n) > 20_000 for n in reloaded.findall(gateway.log()))
    finally:
        await gateway.stop()
