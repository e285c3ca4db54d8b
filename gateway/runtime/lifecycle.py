"""What a gateway process does about its configuration and its parent.

- The configuration is read and validated once, by the process that owns
  the file (the supervisor, or the one process when there is one); workers
  are handed the validated object, at start and on reload, so that a worker
  started again later serves exactly what its siblings serve and an edited
  file cannot crash-loop it.
- A reload reads the file again; a file that does not validate is refused
  with a log line and the running configuration stays.
- A worker dies with its supervisor, however the supervisor died.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import sys
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, load_config

log = logging.getLogger("gateway.server")

# prctl(2): deliver this signal to the calling process when its parent dies.
_PR_SET_PDEATHSIG = 1


def read_config(path: Path) -> GatewayConfig | None:
    """The file's configuration, validated; None (logged) when it does not validate."""
    try:
        return load_config(path)
    except ConfigError as exc:
        log.error(
            "reload refused, the running configuration stays: %s", str(exc).replace("\n", "; ")
        )
        return None


def hand_over(config: GatewayConfig, path: Path) -> None:
    """Leave the validated configuration where workers pick it up on SIGHUP.

    Written to a temporary name and renamed, so a worker never reads half of
    it. The directory is the supervisor's private one (mkdtemp, mode 0700).
    """
    partial = path.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(config))
    partial.replace(path)


def take_over(path: Path) -> GatewayConfig:
    """The configuration the supervisor handed over (see hand_over)."""
    config = pickle.loads(path.read_bytes())
    if not isinstance(config, GatewayConfig):
        raise TypeError(f"{path} does not hold a GatewayConfig")
    return config


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent exits, even by SIGKILL (Linux).

    SIGTERM, not SIGKILL: the worker drains its requests as on any stop.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    # The parent may have died before the call above: then nothing would come.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
