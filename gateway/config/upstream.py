"""The ``upstream`` section: the Glance-compatible backend and how to talk to it."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.config._base import PositiveFloat, PositiveInt, _http_url, _Section
from gateway.config.tls import ClientTlsConfig


class ServiceIdentity(_Section):
    """Who the gateway is when it asks the backend about an image's owner."""

    project_id: str = "image-gateway"
    user_id: str = "image-gateway"
    roles: list[str] = ["admin"]


class UpstreamConfig(_Section):
    url: str
    connect_timeout: PositiveFloat = 2.0
    read_timeout: PositiveFloat = 30.0
    max_connections: PositiveInt = 100
    keepalive_timeout: PositiveFloat = 30.0
    # Errors from the backend are rewritten into the fault envelope unless
    # this is set; 502/504 become 503 unless pass_gateway_errors is set.
    pass_through_errors: bool = False
    pass_gateway_errors: bool = False
    max_error_body_bytes: PositiveInt = 65536
    service_identity: ServiceIdentity = ServiceIdentity()
    owner_cache_ttl: float = Field(default=30.0, ge=0)
    owner_cache_size: PositiveInt = 10000
    # Token roles as the backend should see them in X-Roles: each role named
    # here is replaced by its list (stock Glance knows admin, member and
    # reader, not cloudImages:*); a role not named passes unchanged.
    role_mapping: dict[str, list[str]] = {}
    # For an https:// url: the CA that signed the backend's certificate, and
    # the gateway's client certificate when the backend asks for one (mTLS).
    tls: ClientTlsConfig | None = None

    @field_validator("role_mapping")
    @classmethod
    def _lower_case(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # Roles are compared in lower case, as Glance compares them.
        mapping: dict[str, list[str]] = {}
        for role, backend_roles in value.items():
            if role.lower() in mapping:
                raise ValueError(f"role {role!r} is mapped twice (roles ignore case)")
            if any("," in r or not r.strip() for r in backend_roles):
                raise ValueError(f"role {role!r}: a backend role is empty or holds a comma")
            mapping[role.lower()] = [r.lower() for r in backend_roles]
        return mapping

    @field_validator("url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _http_url(value).rstrip("/")

    @model_validator(mode="after")
    def _tls_needs_https(self) -> Self:
        if self.tls is not None and not self.url.startswith("https://"):
            raise ValueError("tls is set but url is not an https:// URL")
        return self
