"""Log lines logged in one loop turn share one write; none is lost or reordered.
Their time reads as datetime writes it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import threading
from datetime import UTC, datetime

from gateway.observability.logs import JsonFormatter, LoopBatchedHandler, utc_iso_ms


class CountingStream(io.StringIO):
    """A text stream that counts the writes made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def make_logger(stream: CountingStream) -> tuple[logging.Logger, LoopBatchedHandler]:
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.batched.{id(stream)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler


def messages(stream: CountingStream) -> list[str]:
    return [json.loads(line)["message"] for line in stream.getvalue().splitlines()]


async def test_lines_of_one_loop_turn_are_one_write_in_order() -> None:
    stream = CountingStream()
    logger, _ = make_logger(stream)
    for i in range(50):
        logger.info("line %d", i)
    assert stream.getvalue() == ""  # not yet: at the end of this turn
    await asyncio.sleep(0)  # let the loop turn end
    assert messages(stream) == [f"line {i}" for i in range(50)]
    assert stream.writes == 1


def test_lines_off_a_loop_are_written_at_once_after_what_is_pending() -> None:
    stream = CountingStream()
    logger, handler = make_logger(stream)

    async def on_a_loop_that_then_closes() -> None:
        logger.info("from the loop")

    loop = asyncio.new_event_loop()
    loop.run_until_complete(on_a_loop_that_then_closes())
    loop.close()
    logger.info("from no loop")
    assert messages(stream) == ["from the loop", "from no loop"]
    handler.flush()
    assert messages(stream) == ["from the loop", "from no loop"]


def test_a_second_loop_in_the_same_thread_batches_its_own_turn() -> None:
    stream = CountingStream()
    logger, _ = make_logger(stream)

    async def one_turn(name: str) -> None:
        for i in range(3):
            logger.info("%s %d", name, i)
        assert stream.getvalue().count(name) == 0  # not before the turn ends
        await asyncio.sleep(0)
        assert messages(stream)[-3:] == [f"{name} {i}" for i in range(3)]

    for name in ("first", "second"):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(one_turn(name))
        loop.close()
    assert stream.writes == 2


async def test_a_line_from_another_thread_is_written_at_once_after_what_is_pending() -> None:
    stream = CountingStream()
    logger, _ = make_logger(stream)
    logger.info("on the loop")
    # Off the loop while it runs (blocked here, so its turn does not end).
    thread = threading.Thread(target=logger.info, args=("from a thread",))
    thread.start()
    thread.join()
    assert messages(stream) == ["on the loop", "from a thread"]
    logger.info("on the loop again")
    await asyncio.sleep(0)
    assert messages(stream) == ["on the loop", "from a thread", "on the loop again"]


def test_utc_iso_ms_is_datetimes_text_to_the_millisecond() -> None:
    rng = random.Random(7)
    moments = [rng.uniform(0, 4_102_444_800) for _ in range(20_000)]
    # Where rounding to the microsecond carries into the next second or millisecond.
    moments += [1_700_000_000.9999996, 1_700_000_000.9999994, 1_700_000_001.0009995, 0.0]
    for moment in moments:
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
        assert utc_iso_ms(moment) == expected, moment
