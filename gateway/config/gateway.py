"""The whole configuration: every section, and the checks that span sections."""

from __future__ import annotations

from pydantic import model_validator

from gateway.config._base import _Section
from gateway.config.auth import AuthConfig
from gateway.config.authorization import AuthorizationConfig
from gateway.config.headers import HeadersConfig
from gateway.config.listen import ListenConfig, ViaConfig
from gateway.config.observability import AdminConfig, AuditConfig, LoggingConfig
from gateway.config.rate_limit import RateLimitConfig
from gateway.config.revocation import RevocationConfig
from gateway.config.routes import RoutesConfig
from gateway.config.tracing import TracingConfig
from gateway.config.upstream import UpstreamConfig


class GatewayConfig(_Section):
    listen: ListenConfig = ListenConfig()
    via: ViaConfig = ViaConfig()
    headers: HeadersConfig = HeadersConfig()
    upstream: UpstreamConfig
    routes: RoutesConfig = RoutesConfig()
    auth: AuthConfig
    authorization: AuthorizationConfig = AuthorizationConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    revocation: RevocationConfig = RevocationConfig()
    logging: LoggingConfig = LoggingConfig()
    admin: AdminConfig = AdminConfig()
    audit: AuditConfig = AuditConfig()
    # Off unless the section is present.
    tracing: TracingConfig | None = None

    @model_validator(mode="after")
    def _admin_port_apart(self) -> GatewayConfig:
        if self.admin.enabled and self.admin.port == self.listen.port != 0:
            raise ValueError("admin.port must differ from listen.port")
        return self

    @model_validator(mode="after")
    def _required_checks_exist(self) -> GatewayConfig:
        why_absent = {
            "redis": "rate_limit.store is memory" if self.rate_limit.store == "memory" else "",
            "revocation": "revocation.store is memory" if self.revocation.store == "memory" else "",
            "keystone": "auth.keystone is not set" if self.auth.keystone is None else "",
        }
        for name in self.admin.readiness.required:
            if why_absent[name]:
                raise ValueError(
                    f"admin.readiness.required: there is no {name} check to require"
                    f" ({why_absent[name]})"
                )
        return self
