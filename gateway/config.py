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
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.policy_language import OWNER_CHECK, compile_rules
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


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


class ListenConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: PositiveInt = 1
    # The event loop of each worker: uvloop, or asyncio's own when false.
    uvloop: bool = True
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
        return _http_url(value).rstrip("/")


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
    # Optional: sent upstream (X-Project-Name, ...) when the token has them.
    project_name: str | None = None
    project_domain_id: str | None = None
    user_name: str | None = None
    user_domain_id: str | None = None


class JwksConfig(_Section):
    """An issuer's JSON Web Key Set, fetched over HTTP and refreshed in the background."""

    url: str
    # Keys from the set are used only with these algorithms (pinned here, never
    # taken from the token or the key set); HMAC is never accepted from a JWKS.
    algorithms: list[Algorithm] = ["RS256"]
    cache_ttl: PositiveFloat = 300.0
    # An unknown kid triggers at most one refetch per this interval, so a flood
    # of forged kids costs the key server nothing.
    min_refetch_interval: PositiveFloat = 30.0
    # How long a kid the fresh key set did not have is refused without asking.
    unknown_kid_ttl: PositiveFloat = 60.0
    timeout: PositiveFloat = 5.0
    max_bytes: PositiveInt = 1_000_000

    @field_validator("url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[Algorithm]) -> list[Algorithm]:
        if not value:
            raise ValueError("name at least one algorithm")
        hmac = sorted(set(value) & HMAC_ALGORITHMS)
        if hmac:
            raise ValueError(f"{hmac[0]} keys are secrets and never come from a JWKS")
        return value


def _with_exp(value: list[str]) -> list[str]:
    # A token without an expiry would be valid forever, and the verified
    # token cache could never bound its entries by it.
    return value if "exp" in value else ["exp", *value]


class IssuerConfig(_Section):
    """One trusted identity provider: its name, audience, keys and claim layout."""

    # None trusts tokens without (or with any) iss; at most one issuer may.
    issuer: str | None = None
    audience: str | None = None
    keys: list[VerificationKey] = []
    jwks: JwksConfig | None = None
    required_claims: list[str] = ["exp"]
    claims: ClaimPaths = ClaimPaths()

    _exp_always_required = field_validator("required_claims")(_with_exp)

    @model_validator(mode="after")
    def _has_keys(self) -> Self:
        if not self.keys and self.jwks is None:
            raise ValueError("give keys, a jwks url, or both")
        kids = [k.kid for k in self.keys if k.kid is not None]
        if len(kids) != len(set(kids)):
            raise ValueError("keys: every kid must be unique")
        return self


_ISSUER_FIELDS = ("issuer", "audience", "keys", "jwks", "required_claims", "claims")


class AuthConfig(_Section):
    realm: str = "image-gateway"
    # The top-level issuer, audience, keys, jwks, claims and required_claims
    # describe one trusted issuer; `issuers` lists more.
    keys: list[VerificationKey] = []
    jwks: JwksConfig | None = None
    issuer: str | None = None
    audience: str | None = None
    required_claims: list[str] = ["exp"]
    claims: ClaimPaths = ClaimPaths()
    issuers: list[IssuerConfig] = []
    leeway: float = Field(default=5.0, ge=0, le=300)
    max_token_bytes: PositiveInt = 8192
    token_cache_size: int = Field(default=10000, ge=0)
    dev_signing_key: DevSigningKey | None = None

    _exp_always_required = field_validator("required_claims")(_with_exp)

    @property
    def trusted_issuers(self) -> list[IssuerConfig]:
        top: list[IssuerConfig] = []
        if self.keys or self.jwks is not None:
            top.append(IssuerConfig(**{name: getattr(self, name) for name in _ISSUER_FIELDS}))
        return [*top, *self.issuers]

    @model_validator(mode="after")
    def _issuers_distinct(self) -> Self:
        if not self.keys and self.jwks is None and not self.issuers:
            raise ValueError("trust at least one issuer: give keys or jwks, or list issuers")
        top_level_named = self.issuer is not None or self.audience is not None
        if top_level_named and not self.keys and self.jwks is None:
            raise ValueError("issuer and audience at the top level need keys or jwks there")
        kids = [k.kid for k in self.keys if k.kid is not None]
        if len(kids) != len(set(kids)):
            raise ValueError("keys: every kid must be unique")
        names = [i.issuer for i in self.trusted_issuers]
        if len(names) != len(set(names)):
            raise ValueError("issuers: every issuer must be named once (and at most one unnamed)")
        return self


class RouteRoles(_Section):
    roles: list[str] = Field(min_length=1)


def _default_route_roles() -> dict[str, RouteRoles]:
    return {"image:delete": RouteRoles(roles=["cloudImages:admin"])}


class PolicyRule(_Section):
    """A rule in the policy language (gateway/policy_language.py)."""

    check: str
    # Shadow mode: the decision is logged and counted, the request goes through.
    shadow: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"check": value} if isinstance(value, str) else value


# Route names are resource:action; helper rules are named otherwise.
_ROUTE_LIKE = re.compile(r"^[a-z_]+:[a-z_]+$")


def _read_policy_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except UnicodeDecodeError as exc:
        raise ValueError(f"policy_file {path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ValueError(f"cannot read policy_file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"policy_file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"policy_file {path} must map rule names to rules")
    return data


class AuthorizationConfig(_Section):
    # The simple form: roles that act on any tenant's image (Rackspace's and
    # Glance's "admin"), and per route the roles that may act on their own
    # project's images. A rule of the same name in `rules` replaces it.
    admin_roles: list[str] = ["admin"]
    routes: dict[str, RouteRoles] = Field(default_factory=_default_route_roles)
    # Rules by name, in the policy language; a route's rule is the one named
    # after it. `policy_file` is a YAML file of more rules, read at start-up.
    policy_file: Path | None = None
    rules: dict[str, PolicyRule] = {}

    @model_validator(mode="before")
    @classmethod
    def _merge_policy_file(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or data.get("policy_file") is None:
            return data
        path = _resolve(Path(data["policy_file"]), info)
        from_file = _read_policy_file(path)
        inline = data.get("rules") or {}
        both = sorted(set(from_file) & set(inline))
        if both:
            raise ValueError(f"rule {both[0]!r} is in both policy_file and rules")
        return {**data, "policy_file": path, "rules": {**from_file, **inline}}

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, value: dict[str, RouteRoles]) -> dict[str, RouteRoles]:
        unknown = sorted(set(value) - ROUTE_NAMES)
        if unknown:
            known = ", ".join(sorted(ROUTE_NAMES))
            raise ValueError(f"unknown route {unknown[0]!r}; known: {known}")
        return value

    @model_validator(mode="after")
    def _rules_compile(self) -> Self:
        # A misspelt route rule would leave the route on its default policy.
        for name in self.rules:
            if _ROUTE_LIKE.match(name) and name not in ROUTE_NAMES:
                known = ", ".join(sorted(ROUTE_NAMES))
                raise ValueError(f"rule {name!r} is named like a route, but none is: {known}")
        compile_rules(self.rule_texts())
        return self

    def rule_texts(self) -> dict[str, str]:
        """Every rule by name, the simple form written out in the policy language."""
        admin = " or ".join(f"role:{r}" for r in self.admin_roles) or "!"
        texts = {
            route: f"{admin} or (({' or '.join(f'role:{r}' for r in rule.roles)})"
            f" and {OWNER_CHECK})"
            for route, rule in self.routes.items()
        }
        # A route without any rule is for admins only.
        texts.update({route: admin for route in ROUTE_NAMES - set(texts)})
        texts.update({name: rule.check for name, rule in self.rules.items()})
        return texts


class RateLimitRule(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    path: str = ".*"
    methods: list[str] = ["*"]
    unit: Literal["second", "minute", "hour", "day"]
    value: PositiveInt
    # global: every caller together, refused with 503 as Repose does.
    by: Literal["project", "user", "ip", "global"] = "project"
    # Shadow: decide and count would-be refusals, but let them pass.
    shadow: bool = False

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
    # Standalone (redis://, rediss://, unix://) or Sentinel
    # (redis+sentinel://host:port[,host:port...]/master_name[/db]); or
    # cluster_nodes (host:port seeds) for a Redis Cluster. Exactly one.
    url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix|redis\+sentinel)://")
    cluster_nodes: list[str] | None = Field(default=None, min_length=1)
    # A limiter that waits on a slow Redis slows every request; past this the
    # failure mode decides.
    timeout: PositiveFloat = 0.25
    key_prefix: str = "igw"
    # While Redis is down requests skip it; it is probed this often so that
    # the gateway returns to it on its own.
    probe_interval: PositiveFloat = 0.25
    # Per-tenant overrides are re-read this often by every replica.
    overrides_refresh: PositiveFloat = 0.5

    @field_validator("cluster_nodes")
    @classmethod
    def _host_ports(cls, value: list[str] | None) -> list[str] | None:
        for node in value or []:
            host_port(node)
        return value

    @model_validator(mode="after")
    def _one_topology(self) -> Self:
        if (self.url is None) == (self.cluster_nodes is None):
            raise ValueError("give exactly one of url and cluster_nodes")
        if self.url is not None and self.url.startswith("redis+sentinel://"):
            sentinel_parts(self.url)
        return self


def host_port(node: str) -> tuple[str, int]:
    """``"redis-1:6379"`` -> ``("redis-1", 6379)``."""
    host, _, port = node.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{node!r} is not host:port")
    return host, int(port)


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``redis+sentinel://h1:26379,h2:26379/master/0`` -> sentinels, master, db."""
    rest = url.removeprefix("redis+sentinel://")
    hosts, _, path = rest.partition("/")
    master, _, db = path.partition("/")
    if not master:
        raise ValueError("a redis+sentinel:// url needs the master name: .../master_name[/db]")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    return [host_port(node) for node in hosts.split(",")], master, int(db or 0)


class RateLimitConfig(_Section):
    store: Literal["memory", "redis"] = "memory"
    redis: RedisConfig | None = None
    failure_mode: Literal["open", "closed"] = "open"
    over_limit_status: Literal[413, 429] = 413
    headers: bool = True
    rules: list[RateLimitRule] = []
    # Peers whose X-Forwarded-For is believed, for rules counted by ip.
    trusted_proxies: list[IPvAnyNetwork] = []

    @model_validator(mode="after")
    def _redis_when_needed(self) -> RateLimitConfig:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store 'redis' needs a redis section (url or cluster_nodes)")
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rules: every rule name must be unique")
        return self


class RevocationConfig(_Section):
    """Where revoked tokens, users and projects are shared between gateway processes."""

    store: Literal["memory", "redis"] = "memory"
    redis: RedisConfig | None = None
    # How long a revocation by user or project, or by jti without the token's
    # expiry, is kept: at least the longest life an issuer gives a token.
    max_ttl: PositiveFloat = 86400.0

    @model_validator(mode="after")
    def _redis_when_needed(self) -> Self:
        if self.store == "redis" and self.redis is None:
            raise ValueError("store 'redis' needs a redis section with a url")
        # Revocations travel by pub/sub on one standalone Redis.
        if self.redis is not None and (
            self.redis.url is None or self.redis.url.startswith("redis+sentinel://")
        ):
            raise ValueError("redis: revocations need a redis://, rediss:// or unix:// url")
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
    revocation: RevocationConfig = RevocationConfig()
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
