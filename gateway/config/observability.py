"""The ``logging``, ``admin`` and ``audit`` sections: what the operator sees."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from gateway.config._base import PositiveFloat, PositiveInt, _resolve, _Section


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one object per line, for log shippers; text: for a terminal.
    format: Literal["json", "text"] = "json"


# An admin token shorter than this is guessable; it guards the audit trail.
MIN_ADMIN_TOKEN_CHARS = 16


class AdminConfig(_Section):
    """The operator's listener: health, metrics and the dashboard."""

    enabled: bool = True
    # Loopback by default: the dashboard shows who deleted what.
    host: str = "127.0.0.1"
    port: int = Field(default=9090, ge=0, le=65535)
    # When set, everything but /healthz and /readyz needs it.
    token: SecretStr | None = None
    # Decisions and audit records the dashboard keeps in memory.
    recent_decisions: PositiveInt = 5000
    refresh_seconds: PositiveFloat = 1.0

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
