"""A real nginx that decodes and normalizes paths, as many deployments put in front of Glance.

``proxy_pass http://127.0.0.1:PORT/;`` (a URI part, here "/") makes nginx
send the *normalized* path on: ``%2F`` decoded to ``/`` and ``..`` steps
resolved. A path value that passes the gateway as one segment arrives at the
backend as another resource. A missing nginx fails the test (scripts/test
installs it), never skips it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.waiting import block_until

STARTUP_DEADLINE = 15.0
CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream}/;
    }}
  }}
}}
"""


@dataclass(frozen=True)
class NormalizingHop:
    url: str
    access_log: Path

    def requests(self) -> list[str]:
        """The request lines nginx received, in order."""
        if not self.access_log.exists():
            return []
        return [line.split('"')[1] for line in self.access_log.read_text().splitlines()]


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def normalizing_hop(directory: Path, upstream_port: int) -> Iterator[NormalizingHop]:
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.fail("nginx is not installed; scripts/test installs it (apt: nginx)")
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(CONF.format(dir=directory, port=port, upstream=upstream_port))
    process = subprocess.Popen(
        [nginx, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        block_until(lambda: process.poll() is not None or _answers(port), "nginx", STARTUP_DEADLINE)
        if process.poll() is not None:
            pytest.fail(f"nginx exited: {(directory / 'error.log').read_text()[-2000:]}")
        yield NormalizingHop(f"http://127.0.0.1:{port}", directory / "access.log")
    finally:
        process.terminate()
        process.wait(timeout=10)
