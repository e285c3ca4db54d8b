"""Configuration: one YAML file, validated in full before anything starts.

Every section belongs to one middleware or service and is validated here so
that a bad value is reported with its key path (``auth.keys.0.secret: ...``)
at start-up or by ``image-gateway check-config``, never at request time.

Secrets stay out of the file: any string value may be ``${NAME}`` or
``${NAME:-default}``, read from the environment at load time.

One module a concern: ``listen`` (listen, via), ``upstream``, ``keys`` (key
material), ``auth`` (issuers, JWKS, claims), ``keystone`` (Keystone v3
validation), ``authorization`` (policy),
``redis`` (the topology ``rate_limit`` and ``revocation`` share),
``rate_limit``, ``revocation``, ``routes`` (which operations are served),
``observability`` (logging, admin, audit), ``tls`` (listener and client
certificates), ``tracing`` (OpenTelemetry export),
``gateway`` (the whole file and its cross-section checks) and ``loader``
(YAML, ``${NAME}`` and error reporting). Every public name is also here.
"""

from gateway.config._base import PositiveFloat, PositiveInt
from gateway.config.auth import AuthConfig, ClaimPaths, IssuerConfig, JwksConfig
from gateway.config.authorization import AuthorizationConfig, PolicyRule, RouteRoles
from gateway.config.gateway import GatewayConfig
from gateway.config.headers import HeadersConfig
from gateway.config.keys import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    MIN_HMAC_SECRET_BYTES,
    Algorithm,
    DevSigningKey,
    JwtPublicKey,
    VerificationKey,
)
from gateway.config.keystone import (
    ApplicationCredential,
    KeystoneConfig,
    PasswordCredential,
    SharedTokenCache,
)
from gateway.config.listen import ListenConfig, ViaConfig
from gateway.config.loader import ConfigError, load_config, parse_config
from gateway.config.observability import (
    MIN_ADMIN_TOKEN_CHARS,
    AdminConfig,
    AuditConfig,
    LoggingConfig,
    ReadinessConfig,
)
from gateway.config.rate_limit import (
    MAX_BYTES,
    MAX_LIMIT,
    UNIT_SECONDS,
    RateLimitConfig,
    RateLimitRule,
    parse_byte_size,
)
from gateway.config.redis import RedisConfig, host_port, sentinel_parts
from gateway.config.revocation import RevocationConfig
from gateway.config.routes import RoutesConfig
from gateway.config.tls import ClientTlsConfig, ListenerTlsConfig
from gateway.config.tracing import TracingConfig
from gateway.config.upstream import ServiceIdentity, UpstreamConfig

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "MAX_BYTES",
    "MAX_LIMIT",
    "MIN_ADMIN_TOKEN_CHARS",
    "MIN_HMAC_SECRET_BYTES",
    "UNIT_SECONDS",
    "AdminConfig",
    "Algorithm",
    "ApplicationCredential",
    "AuditConfig",
    "AuthConfig",
    "AuthorizationConfig",
    "ClaimPaths",
    "ClientTlsConfig",
    "ConfigError",
    "DevSigningKey",
    "GatewayConfig",
    "HeadersConfig",
    "IssuerConfig",
    "JwksConfig",
    "JwtPublicKey",
    "KeystoneConfig",
    "ListenConfig",
    "ListenerTlsConfig",
    "LoggingConfig",
    "PasswordCredential",
    "PolicyRule",
    "PositiveFloat",
    "PositiveInt",
    "RateLimitConfig",
    "RateLimitRule",
    "ReadinessConfig",
    "RedisConfig",
    "RevocationConfig",
    "RouteRoles",
    "RoutesConfig",
    "ServiceIdentity",
    "SharedTokenCache",
    "TracingConfig",
    "UpstreamConfig",
    "VerificationKey",
    "ViaConfig",
    "host_port",
    "load_config",
    "parse_byte_size",
    "parse_config",
    "sentinel_parts",
]
