"""``python -m gateway`` as an operator runs it: the one way the suite starts a gateway process.

A ``GatewayProcess`` is started with ``start()``, which returns once the
process accepts connections on its listen port; ``stop()`` signals it and
waits for it to exit. What it writes to stdout and stderr is kept in files
beside its configuration, for the test to read and for the failure message
when it does not start or does not stop.

Started means listening, not ready: some tests start a gateway that must
report itself unready, and some run it with no admin listener, so /readyz
is for the test to ask, not for the start to wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO
from tests.support.gateway_config import write_config

START_DEADLINE = 30.0
STOP_DEADLINE = 30.0
POLL_INTERVAL = 0.05
# How much of its output a failure message shows.
OUTPUT_TAIL = 3000

# gateway_processes(config, n) -> the URLs of n gateways of that configuration
# (the fixture is tests/conftest.py's).
GatewayFleet = Callable[[dict[str, Any], int], Awaitable[list[str]]]


@dataclass
class GatewayProcess:
    """One ``python -m gateway <arguments>`` process that listens on ``port``."""

    arguments: tuple[str, ...]
    port: int
    # Its stdout and stderr are written here, as NAME.out and NAME.err.
    directory: Path
    name: str = "gateway"
    # The whole environment it starts with; this process's own when None.
    env: Mapping[str, str] | None = None
    # Started as a script's `cmd &` starts it: SIGINT ignored, inherited.
    sigint_ignored: bool = False
    process: asyncio.subprocess.Process | None = None

    @classmethod
    def run(cls, config: dict[str, Any], directory: Path, name: str = "gateway") -> GatewayProcess:
        """``run --config DIRECTORY/NAME.yaml`` with ``config`` written there; it
        listens on ``config["listen"]["port"]``."""
        path = write_config(directory / f"{name}.yaml", config)
        return cls(("run", "--config", str(path)), int(config["listen"]["port"]), directory, name)

    @property
    def config_file(self) -> Path:
        return self.directory / f"{self.name}.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_file(self) -> Path:
        return self.directory / f"{self.name}.out"

    @property
    def stderr_file(self) -> Path:
        return self.directory / f"{self.name}.err"

    @property
    def pid(self) -> int:
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        return self._started().returncode

    def output(self) -> str:
        """All it wrote to stdout so far."""
        return self.stdout_file.read_text(errors="replace")

    def log(self) -> str:
        """All it wrote to stderr so far: its log lines."""
        return self.stderr_file.read_text(errors="replace")

    async def start(self) -> GatewayProcess:
        """Start it, and return once its listen port accepts connections."""
        assert self.process is None, f"{self.name} was started already"
        # Unbuffered, so what it printed is in the files while it runs, not at exit.
        env = {**(os.environ if self.env is None else self.env), "PYTHONUNBUFFERED": "1"}
        with self.stdout_file.open("wb") as stdout, self.stderr_file.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                *self.arguments,
                cwd=REPO,
                env=env,
                stdout=stdout,
                stderr=stderr,
                preexec_fn=_ignore_sigint if self.sigint_ignored else None,
            )
        await self.wait_listening()
        return self

    async def wait_listening(self, deadline: float = START_DEADLINE) -> None:
        """Until the listen port accepts a connection; the test fails, with the
        process's output, if it exits first or the deadline passes."""
        process = self._started()
        end = time.monotonic() + deadline
        while not await self._accepts():
            if process.returncode is not None:
                exit_code = process.returncode
                pytest.fail(f"{self} exited with {exit_code} before it listened{self._tail()}")
            if time.monotonic() > end:
                await self.kill()
                pytest.fail(f"{self} did not listen within {deadline} s{self._tail()}")
            await asyncio.sleep(POLL_INTERVAL)

    def send_signal(self, signum: int) -> None:
        self._started().send_signal(signum)

    async def wait(self, deadline: float = STOP_DEADLINE) -> int:
        """Its exit code, once it exits; killed, and the test fails, past the deadline."""
        process = self._started()
        if process.returncode is not None:
            return process.returncode
        try:
            return await asyncio.wait_for(process.wait(), deadline)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"{self} did not exit within {deadline} s{self._tail()}")

    async def stop(self, signum: int = signal.SIGTERM, deadline: float = STOP_DEADLINE) -> int:
        """Send ``signum`` unless it has exited already, and wait for its exit code.
        A process never started is left alone (exit code 0)."""
        if self.process is None:
            return 0
        if self.process.returncode is None:
            self.process.send_signal(signum)
        return await self.wait(deadline)

    async def kill(self) -> None:
        """SIGKILL, for a test's clean-up after a failure: no exit code is asked of it."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def __str__(self) -> str:
        return f"python -m gateway {' '.join(self.arguments)} (port {self.port})"

    def _started(self) -> asyncio.subprocess.Process:
        assert self.process is not None, f"{self.name} was not started"
        return self.process

    async def _accepts(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _tail(self) -> str:
        parts = []
        for path in (self.stdout_file, self.stderr_file):
            text = path.read_text(errors="replace") if path.exists() else ""
            if text:
                parts.append(f"\n--- {path.name} ---\n{text[-OUTPUT_TAIL:]}")
        return "".join(parts)


def _ignore_sigint() -> None:
    # In the child, before exec: an ignored signal stays ignored across exec.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def stop_all(processes: list[GatewayProcess], signum: int = signal.SIGTERM) -> None:
    """Signal every one at once, then wait for each: every one is ended, even when
    one does not exit (killed, and the test fails naming it)."""
    for process in processes:
        if process.process is not None and process.process.returncode is None:
            process.process.send_signal(signum)
    hung = []
    for process in processes:
        try:
            await process.wait()
        except pytest.fail.Exception:
            hung.append(str(process))
    assert not hung, f"gateways ignored signal {signum}: {hung}"
