"""Free ports, the servers of a run started and stopped, and a commit's tree."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {deadline}s")


def checkout(ref: str, into: Path, name: str = "baseline") -> Path:
    """The tree of ``ref`` (a commit of this repository), extracted to ``into/name``."""
    tree = into / name
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@contextmanager
def started(
    commands: dict[str, tuple[list[str], int]],
    logs: Path,
    trees: dict[str, Path],
    deadline: float = 20.0,
) -> Iterator[dict[str, int]]:
    """Start each command (in its tree, REPO unless ``trees`` names another),
    wait ``deadline`` seconds at most for its port; yield their pids; stop them all."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (command, port) in commands.items():
            log = (logs / f"{name}.log").open("wb")
            tree = trees.get(name, REPO)
            # The tree's own package first, before the installed one.
            env = {**os.environ, "PYTHONPATH": str(tree)}
            processes[name] = subprocess.Popen(
                command, cwd=tree, stdout=log, stderr=subprocess.STDOUT, env=env
            )
            wait_listening(port, processes[name], deadline)
        yield {name: process.pid for name, process in processes.items()}
    finally:
        # The proxies first, so they never see their upstream vanish.
        for process in reversed(processes.values()):
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
