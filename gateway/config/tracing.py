"""The ``tracing`` section: OpenTelemetry spans exported over OTLP/HTTP.

Absent, nothing of OpenTelemetry is loaded and the chain has no tracing
step; present, every process exports its spans in batches to ``endpoint``.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.config._base import PositiveFloat, PositiveInt, _http_url, _Section
from gateway.config.tls import ClientTlsConfig


class TracingConfig(_Section):
    # The collector's OTLP/HTTP traces endpoint, path included.
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    # Of the traces this gateway starts, the share recorded; a request that
    # arrives with a traceparent follows its caller's sampling decision.
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str = Field(default="image-gateway", min_length=1)
    # Headers sent with each export (a collector's API key: ${NAME}).
    headers: dict[str, str] = {}
    # One export, retries included, gives up after this; shutdown waits no longer.
    timeout: PositiveFloat = 5.0
    # Spans wait here between exports; past max_queue_size new ones are dropped
    # (counted), never waited for.
    max_queue_size: PositiveInt = 2048
    max_export_batch_size: PositiveInt = 512
    schedule_delay: PositiveFloat = 2.0
    tls: ClientTlsConfig | None = None

    @field_validator("endpoint")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _http_url(value)

    @model_validator(mode="after")
    def _fits_the_exporter(self) -> Self:
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError("max_export_batch_size must not exceed max_queue_size")
        if self.tls is not None:
            if not self.endpoint.startswith("https://"):
                raise ValueError("tls is set but endpoint is not an https:// URL")
            if not self.tls.verify_hostname:
                raise ValueError("tls.verify_hostname: the exporter always verifies the name")
        return self
