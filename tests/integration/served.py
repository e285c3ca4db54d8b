"""Waiting for an OpenStack service under gunicorn to answer, for the fixtures."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

START_TIMEOUT = 60.0


def wait_answering(name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``url`` answers 200; the test fails if the process exits or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset or timed out while it starts
            time.sleep(0.1)  # polling for the server to come up, with a deadline
    pytest.fail(f"{name} did not answer within {START_TIMEOUT}s:\n{log.read_text()[-3000:]}")
