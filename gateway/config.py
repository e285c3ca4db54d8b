"""Configuration: one YAML file, validated in full before anything starts.

Every section belongs to one middleware or service and is validated here so
that a bad value is reported with its key path (``auth.keys.0.secret: ...``)
at start-up or by ``image-gateway check-config``, never at request time.

Secrets stay out of the file: any string value may be ``${NAME}`` or
``${NAME:-default}``, read from the environment at load time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.routes import ROUTE_NAMES

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
Algorithm = Literal[
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
]  # fmt: skip

# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
MIN_HMAC_SECRET_BYTES = 32

UNIT_SECONDS: Mapping[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

# RFC 9110 token characters: the pseudonym appears bare in a Via header.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

JwtPublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_KEY_FAMILY: Mapping[str, type | tuple[type, ...]] = {
    "RS": rsa.RSAPublicKey,
    "PS": rsa.RSAPublicKey,
    "ES": ec.EllipticCurvePublicKey,
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class ConfigError(Exception):
    """A configuration that cannot run; the message names every bad key path."""


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored default.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return path if path.is_absolute() or base is None else Path(base) / path


def _read_pem(inline: str | None, file: Path | None, what: str) -> bytes:
    if (inline is None) == (file is None):
        raise ValueError(f"give exactly one of {what} and {what}_file")
    if file is not None:
        try:
            return file.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {what}_file {file}: {exc.strerror}") from None
    assert inline is not None
    return inline.encode()


class ListenConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: PositiveInt = 1
    shutdown_timeout: PositiveFloat = 10.0


class ViaConfig(_Section):
    pseudonym: str = "image-gateway"

    @field_validator("pseudonym")
    @classmethod
    def _is_token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError("must be an RFC 9110 token (letters, digits, -._~ and similar)")
        return value


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

    @field_validator("url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class _Key(_Section):
    kid: str | None = None
    algorithm: Algorithm
    secret: SecretStr | None = None

    @field_validator("public_key_file", "private_key_file", check_fields=False)
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @model_validator(mode="after")
    def _key_loads(self) -> Self:
        # Load once now so that a bad key fails at start-up with its path.
        self.key()
        return self

    def key(self) -> object:
        raise NotImplementedError


class VerificationKey(_Key):
    """A key tokens may be signed with: an HMAC secret or a public key."""

    public_key: str | None = None
    public_key_file: Path | None = None

    def key(self) -> bytes | JwtPublicKey:
        if self.algorithm in HMAC_ALGORITHMS:
            if self.public_key is not None or self.public_key_file is not None:
                raise ValueError(f"{self.algorithm} takes a secret, not a public key")
            return _hmac_secret(self.secret, self.algorithm)
        if self.secret is not None:
            raise ValueError(f"{self.algorithm} takes a public key, not a secret")
        pem = _read_pem(self.public_key, self.public_key_file, "public_key")
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError:
            raise ValueError("public key is not a PEM public key") from None
        if not isinstance(key, _KEY_FAMILY[self.algorithm[:2]]):
            raise ValueError(f"public key type {type(key).__name__} does not fit {self.algorithm}")
        assert isinstance(key, JwtPublicKey)
        return key


class DevSigningKey(_Key):
    """The key ``image-gateway token`` and the demo sign with. Never in production."""

    private_key: str | None = None
    private_key_file: Path | None = None

    def key(self) -> bytes | PrivateKeyTypes:
        if self.algorithm in HMAC_ALGORITHMS:
            return _hmac_secret(self.secret, self.algorithm)
        pem = _read_pem(self.private_key, self.private_key_file, "private_key")
        try:
            return serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("private key is not an unencrypted PEM private key") from None


def _hmac_secret(secret: SecretStr | None, algorithm: str) -> bytes:
    if secret is None:
        raise ValueError(f"{algorithm} needs a secret")
    raw = secret.get_secret_value().encode()
    if len(raw) < MIN_HMAC_SECRET_BYTES:
        raise ValueError(f"{algorithm} secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
    return raw


class ClaimPaths(_Section):
    """Where the identity lives in a token; dotted paths reach nested claims."""

    project: str = "project_id"
    user: str = "sub"
    roles: str = "roles"


class AuthConfig(_Section):
    realm: str = "image-gateway"
    keys: list[VerificationKey] = Field(min_length=1)
    issuer: str | None = None
    audience: str | None = None
    leeway: float = Field(default=5.0, ge=0, le=300)
    required_claims: list[str] = ["exp"]
    claims: ClaimPaths = ClaimPaths()
    max_token_bytes: PositiveInt = 8192
    token_cache_size: int = Field(default=10000, ge=0)
    dev_signing_key: DevSigningKey | None = None

    @field_validator("required_claims")
    @classmethod
    def _exp_always_required(cls, value: list[str]) -> list[str]:
        # A token without an expiry would be valid forever, and the verified
        # token cache could never bound its entries by it.
        return value if "exp" in value else ["exp", *value]

    @model_validator(mode="after")
    def _kids_unique(self) -> AuthConfig:
        kids = [k.kid for k in self.keys if k.kid is not None]
        if len(kids) != len(set(kids)):
            raise ValueError("keys: every kid must be unique")
        return self


class RouteRoles(_Section):
    roles: list[str] = Field(min_length=1)


def _default_route_roles() -> dict[str, RouteRoles]:
    return {"image:delete": RouteRoles(roles=["cloudImages:admin"])}


class AuthorizationConfig(_Section):
    # Roles that act on any tenant's image (Rackspace's and Glance's "admin").
    admin_roles: list[str] = ["admin"]
    routes: dict[str, RouteRoles] = Field(default_factory=_default_route_roles)

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, value: dict[str, RouteRoles]) -> dict[str, RouteRoles]:
        unknown = sorted(set(value) - ROUTE_NAMES)
        if unknown:
            known = ", ".join(sorted(ROUTE_NAMES))
            raise ValueError(f"unknown route {unknown[0]!r}; known: {known}")
        return value


class RateLimitRule(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    path: str = ".*"
    methods: list[str] = ["*"]
    unit: Literal["second", "minute", "hour", "day"]
    value: PositiveInt
    by: Literal["project", "user", "ip"] = "project"

    @field_validator("path")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @property
    def period_seconds(self) -> int:
        return UNIT_SECONDS[self.unit]


class RedisConfig(_Section):
    url: str = Field(pattern=r"^(redis|rediss|unix)://")
    # A limiter that waits on a slow Redis slows every request; past this the
    # failure mode decides.
    timeout: PositiveFloat = 0.25
    key_prefix: str = "igw"


class RateLimitConfig(_Section):
    store: Literal["memory", "redis"] = "memory"
    redis: RedisConfig | None = None
    failure_mode: Literal["open", "closed"] = "open"
    over_limit_status: Literal[413, 429] = 413
    headers: bool = True
    rules: list[RateLimitRule] = []

    @model_validator(mode="after")
    def _redis_when_needed(self) -> RateLimitConfig:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store 'redis' needs a redis section with a url")
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rules: every rule name must be unique")
        return self


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


class GatewayConfig(_Section):
    listen: ListenConfig = ListenConfig()
    via: ViaConfig = ViaConfig()
    upstream: UpstreamConfig
    auth: AuthConfig
    authorization: AuthorizationConfig = AuthorizationConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    logging: LoggingConfig = LoggingConfig()
    admin: AdminConfig = AdminConfig()
    audit: AuditConfig = AuditConfig()

    @model_validator(mode="after")
    def _admin_port_apart(self) -> GatewayConfig:
        if self.admin.enabled and self.admin.port == self.listen.port != 0:
            raise ValueError("admin.port must differ from listen.port")
        return self


def _interpolate(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}".lstrip("."), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}.{i}", env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set")

    return _ENV_REF.sub(substitute, value)


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def parse_config(
    data: Any, *, base_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    if not isinstance(data, dict):
        raise ConfigError("(top level): the configuration must be a mapping")
    data = _interpolate(data, "", os.environ if env is None else env)
    try:
        return GatewayConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, which plain
    YAML loading would resolve silently in favour of the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, base_dir=path.parent, env=env)
