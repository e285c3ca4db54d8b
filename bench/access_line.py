"""What one access line costs, side by side in one run: through logging (a
LogRecord and its handler chain, as with any handler set-up but ours alone)
and handed straight to the gateway's JSON handler (the shipped set-up).

    python -m bench.access_line [--lines 20000] [--rounds 5]   # from the repository root

Both write the same line for the same record to /dev/null, batched per loop
turn as in the gateway; rounds alternate, and the median CPU-µs per line of
each is printed, with their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from typing import TextIO

from gateway.observability.access_log import AccessLog
from gateway.observability.logs import JsonFormatter, LoopBatchedHandler, RequestIdDefault
from gateway.observability.records import RecordFields, RequestRecord


def record(request_id: str) -> RequestRecord:
    image = "3f1a4f9e-5d8a-4c55-9a55-5d9b6f7c0a11"
    fields: RecordFields = {
        "global_request_id": None,
        "method": "DELETE",
        "path": f"/v2/images/{image}",
        "route": "delete_image",
        "image_id": image,
        "project": "bench",
        "user": "user-1",
        "client": "127.0.0.1",
        "status": 204,
        "decision": "forwarded",
        "reason": None,
        "upstream_status": 204,
        "upstream_error": None,
        "limiter": "allowed",
        "limits": [
            {
                "subject": "project:bench",
                "rule": "image-deletes",
                "limit": 60,
                "period": 60,
                "remaining": 59,
                "reset_after": 1.0,
            }
        ],
        "duration_ms": 1.2,
        "upstream_ms": 0.5,
        "pid": os.getpid(),
        "outcome": "deleted",
    }
    return RequestRecord(time.time(), request_id, fields)


def logger(name: str, stream: TextIO, *, alone: bool) -> logging.Logger:
    handler = LoopBatchedHandler(stream)
    handler.addFilter(RequestIdDefault())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]
    if not alone:
        # Any second handler sends the line through logging; one that
        # takes nothing costs only the record and the chain.
        log.addHandler(logging.NullHandler())
    return log


async def per_line(access: AccessLog, lines: int) -> float:
    records = [record(f"req-{i:08d}-0000-4000-8000-000000000000") for i in range(lines)]
    started = time.process_time()
    for i, each in enumerate(records):
        access.write(each)
        if i % 16 == 15:
            await asyncio.sleep(0)  # a loop turn, as requests finish in bursts
    await asyncio.sleep(0)
    return (time.process_time() - started) / lines * 1e6


async def main(args: argparse.Namespace, sink: TextIO) -> None:
    paths = {
        "through logging": AccessLog(logger("bench.access.logging", sink, alone=False)),
        "straight to the handler": AccessLog(logger("bench.access.direct", sink, alone=True)),
    }
    costs: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, access in paths.items():
            costs[name].append(await per_line(access, args.lines))
    medians = {name: statistics.median(values) for name, values in costs.items()}
    for name, value in medians.items():
        print(f"{name}: {value:.1f} CPU-us per access line (median of {args.rounds} rounds)")
    print(f"ratio: {medians['straight to the handler'] / medians['through logging']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    with open(os.devnull, "w") as devnull:
        asyncio.run(main(parser.parse_args(), devnull))
