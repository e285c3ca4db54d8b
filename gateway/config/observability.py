"""The ``logging``, ``admin`` and ``audit`` sections: what the operator sees."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from gateway.config._base import PositiveFloat, PositiveInt, _resolve, _Section


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one object per line, for log shippers; text: for a terminal.
    format: Literal["json", "text"] = "json"


# An admin token shorter than this is guessable; it guards the audit trail.
MIN_ADMIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# The checks of shared dependencies that may fail without failing /readyz.
DegradableCheck = Literal["redis", "revocation", "keystone"]


class ReadinessConfig(_Section):
    """What /readyz counts. A shared dependency that fails open (the limiter's
    Redis, the revocations' Redis, Keystone while cached tokens work) is
    reported degraded with a 200 so that its outage does not take every
    replica out of the load balancer at once; a check named here fails
    readiness instead (as does a Redis whose failure_mode is closed)."""

    required: list[DegradableCheck] = []


class AdminConfig(_Section):
    """The operator's listener: health, metrics and the dashboard."""

    enabled: bool = True
    # Loopback by default: the dashboard shows who deleted what.
    host: str = "127.0.0.1"
    port: int = Field(default=9090, ge=0, le=65535)
    # When set, everything but /healthz and /readyz needs it.
    token: SecretStr | None = None
    # Host names (Host header, port aside) the listener answers to besides
    # loopback and its own address, so that a page that rebinds a DNS name
    # to this address cannot read the dashboard. /healthz and /readyz answer
    # any Host: probes use the pod's IP.
    allowed_hosts: list[str] = []
    # Decisions and audit records the dashboard keeps in memory.
    recent_decisions: PositiveInt = 5000
    refresh_seconds: PositiveFloat = 1.0
    readiness: ReadinessConfig = ReadinessConfig()

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Self:
        if self.enabled and self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"admin.token is required when admin.host ({self.host}) is not loopback:"
                " the dashboard shows who deleted what"
            )
        return self

    @property
    def host_names(self) -> frozenset[str]:
        """Every Host the listener answers to."""
        return frozenset(
            {"localhost", "127.0.0.1", "::1", self.host.lower()}
            | {name.lower() for name in self.allowed_hosts}
        )

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters")
        return value


class AuditConfig(_Section):
    # "stderr", or a file every worker appends JSON lines to (relative paths
    # are relative to the config file).
    sink: str = "stderr"

    @field_validator("sink")
    @classmethod
    def _writable_place(cls, value: str, info: ValidationInfo) -> str:
        if value == "stderr":
            return value
        path = _resolve(Path(value), info)
        if not path.parent.is_dir():
            raise ValueError(f"directory {path.parent} does not exist")
        return str(path)
