"""The gateway's configuration as a deployment file hands it to the image.

A deployment (compose, Kubernetes) mounts a configuration at the path the
image's command names and sets environment variables; these helpers load
that configuration with exactly that environment, through the gateway's own
loader and schema, and say which variables it reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import GatewayConfig, load_config
from gateway.config.loader import _ENV_REF

# Docker Compose's own ${NAME:-default} in a value, resolved to its default
# (the test runs with no such variable set).
_COMPOSE_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def env_names_read(config_file: Path) -> set[str]:
    """Every ${NAME} the configuration file reads."""
    return {match.group(1) for match in _ENV_REF.finditer(config_file.read_text())}


def compose_value(value: str) -> str:
    return _COMPOSE_DEFAULT.sub(lambda match: match.group(1), value)


def load_with(config_file: Path, env: Mapping[str, str]) -> GatewayConfig:
    """Loads with this environment only: a variable it needs and lacks fails."""
    return load_config(config_file, env=dict(env))


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname, url
    return parts.hostname, parts.port or default_port
