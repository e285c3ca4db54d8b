"""What each worker reports of itself to the supervisor's /readyz.

Only a worker knows whether its keys are loaded and its revocations are
current. Each writes the result of those checks to a small JSON file in the
supervisor's runtime directory every second; the supervisor's readiness
reads them, and a worker whose file is missing or stale is not ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from gateway.observability.readiness import Readiness, ReadinessResult

log = logging.getLogger("gateway.server")

REPORT_EVERY_SECONDS = 1.0
STALE_AFTER_SECONDS = 5.0


def status_path(directory: Path, pid: int) -> Path:
    return directory / f"{pid}.json"


async def report_forever(directory: Path, checks: Callable[[], Readiness]) -> None:
    """Write this worker's own checks (``checks()``: the current app's) until cancelled."""
    path = status_path(directory, os.getpid())
    partial = path.with_suffix(".partial")
    while True:
        try:
            report = await checks().report()
            partial.write_text(json.dumps({"time": time.time(), "checks": report["checks"]}))
            partial.replace(path)
        except Exception:
            # A background task: log and carry on (the supervisor sees the
            # file go stale if this keeps failing).
            log.exception("could not write the worker status")
        await asyncio.sleep(REPORT_EVERY_SECONDS)


class WorkersReady:
    """Every live worker reports its keys loaded and its revocations current
    (or, failing open, degraded: the worker serves on)."""

    name = "worker_checks"

    def __init__(self, directory: Path, pids: Callable[[], list[int]]) -> None:
        self.directory = directory
        self.pids = pids

    async def __call__(self) -> ReadinessResult:
        problems, degraded = [], []
        pids = self.pids()
        for pid in pids:
            try:
                status = json.loads(status_path(self.directory, pid).read_text())
            except (OSError, ValueError):
                problems.append(f"pid {pid}: no report yet")
                continue
            if time.time() - float(status["time"]) > STALE_AFTER_SECONDS:
                problems.append(f"pid {pid}: report stale")
            for name, check in status["checks"].items():
                if check["status"] == "failed":
                    problems.append(f"pid {pid} {name}: {check['detail']}")
                elif check["status"] == "degraded":
                    degraded.append(f"pid {pid} {name}: {check['detail']}")
        if problems:
            return ReadinessResult(False, "; ".join(problems + degraded))
        if degraded:
            return ReadinessResult(True, "degraded: " + "; ".join(degraded), degraded=True)
        return ReadinessResult(True, f"{len(pids)} worker(s): keys loaded, revocations current")
