"""Real servers the tests start: redis-server processes on free ports.

This is the one way the suite starts Redis: the shared server of
tests/conftest.py, and the ones a test owns (to kill, restart, or build a
cluster or Sentinel from). A missing binary fails the test; it never skips.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.ports import free_port
from tests.support.waiting import block_until

STARTUP_DEADLINE = 15.0


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; scripts/test installs it (apt: redis-server)")
    return path


def _answers(port: int, password: str | None = None) -> bool:
    try:
        return bool(redis.Redis(port=port, password=password, socket_timeout=0.2).ping())
    except redis.RedisError:
        return False


@dataclass
class RedisProcess:
    """One redis-server this test owns: it can be killed and started again."""

    port: int
    workdir: Path
    extra: tuple[str, ...] = ()
    # Clients must log in with it (requirepass).
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                binary("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.extra,
                *(("--requirepass", self.password) if self.password is not None else ()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        block_until(
            lambda: _answers(self.port, self.password), f"redis on {self.port}", STARTUP_DEADLINE
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass(frozen=True)
class Cluster:
    """A Redis Cluster of masters on these ports (the ``redis_cluster`` fixture)."""

    ports: list[int]

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]
