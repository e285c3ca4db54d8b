"""The ``auth.keystone`` section: validate OpenStack's own tokens at Keystone v3.

The gateway's service credentials are either an application credential or a
user, password and project; secrets come from the environment (``${NAME}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from gateway.config._base import PositiveFloat, PositiveInt, _http_url, _resolve, _Section
from gateway.config.redis import RedisConfig
from gateway.config.tls import ClientTlsConfig

# Derived keys are only as strong as this secret: at least 32 bytes, as the
# HMAC secrets of the JWT issuers.
MIN_CACHE_SECRET_BYTES = 32


class ApplicationCredential(_Section):
    id: str = Field(min_length=1)
    secret: SecretStr


class PasswordCredential(_Section):
    """A service user scoped to its project, as keystonemiddleware's ``password`` plugin."""

    username: str = Field(min_length=1)
    password: SecretStr
    user_domain_name: str = "Default"
    project_name: str = Field(min_length=1)
    project_domain_name: str = "Default"


class SharedTokenCache(_Section):
    """Validated tokens shared by every replica, sealed with keys derived from ``secret``."""

    redis: RedisConfig
    # Both the key of an entry (HMAC of the token) and its encryption are
    # derived from this; every replica must share it.
    secret: SecretStr
    # A slow cache must not hold the request longer than Keystone would.
    timeout: PositiveFloat = 0.25

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_CACHE_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_CACHE_SECRET_BYTES} bytes")
        return value

    @field_validator("redis")
    @classmethod
    def _standalone(cls, value: RedisConfig) -> RedisConfig:
        if value.url is None:
            raise ValueError("the token cache needs a redis://, rediss://, unix:// or sentinel url")
        return value


class KeystoneConfig(_Section):
    # The identity service, e.g. https://keystone.example:5000/v3 (or without /v3).
    auth_url: str
    application_credential: ApplicationCredential | None = None
    password: PasswordCredential | None = None
    # Which identity endpoint of the catalog validates tokens, as
    # keystonemiddleware's ``interface``; null validates at auth_url itself.
    interface: Literal["public", "internal", "admin"] | None = "internal"
    connect_timeout: PositiveFloat = 1.0
    # Past this a validation is a Keystone failure: 503, never a pass.
    timeout: PositiveFloat = 3.0
    # A PEM bundle to verify Keystone's TLS certificate (the system's otherwise).
    ca_file: Path | None = None
    # The same and more (a client certificate, hostname verification) as upstream.tls.
    tls: ClientTlsConfig | None = None
    # A validated token is trusted this long at most (and never past its
    # expiry), as keystonemiddleware's token_cache_time.
    cache_ttl: PositiveFloat = 300.0
    # How long a token Keystone refused is refused without asking again.
    negative_cache_ttl: PositiveFloat = 10.0
    cache_size: int = Field(default=10000, ge=0)
    shared_cache: SharedTokenCache | None = None
    # The service token is renewed this long before it expires.
    service_token_renew_before: PositiveFloat = 120.0
    # A Keystone outage is logged once per this interval (and counted always).
    failure_log_interval: PositiveFloat = 60.0
    # Validate X-Service-Token too and send X-Service-* upstream, as
    # keystonemiddleware does for service-to-service calls.
    service_tokens: bool = False
    max_response_bytes: PositiveInt = 1_000_000

    @field_validator("auth_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _http_url(value).rstrip("/").removesuffix("/v3")

    @field_validator("ca_file")
    @classmethod
    def _resolve_ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if (self.application_credential is None) == (self.password is None):
            raise ValueError("give exactly one of application_credential and password")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file: {self.ca_file} is not a file")
        if self.ca_file is not None and self.tls is not None:
            raise ValueError("give the CA bundle once: tls.ca_file, not ca_file beside tls")
        return self

    @property
    def client_tls(self) -> ClientTlsConfig:
        """``tls``, or the CA bundle of ``ca_file`` alone."""
        return self.tls or ClientTlsConfig(ca_file=self.ca_file)
