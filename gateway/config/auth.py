"""The ``auth`` section: the trusted issuers, their keys or JWKS, and the claim layout."""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.config._base import PositiveFloat, PositiveInt, _http_url, _Section
from gateway.config.keys import HMAC_ALGORITHMS, Algorithm, DevSigningKey, VerificationKey
from gateway.config.keystone import KeystoneConfig
from gateway.config.tls import ClientTlsConfig


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
    # A private CA for the key server, and a client certificate if it asks for one.
    tls: ClientTlsConfig | None = None

    @field_validator("url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _http_url(value)

    @model_validator(mode="after")
    def _tls_needs_https(self) -> Self:
        if self.tls is not None and not self.url.startswith("https://"):
            raise ValueError("tls is set but url is not an https:// URL")
        return self

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


def _unique_kids(keys: list[VerificationKey]) -> None:
    kids = [k.kid for k in keys if k.kid is not None]
    if len(kids) != len(set(kids)):
        raise ValueError("keys: every kid must be unique")


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
        _unique_kids(self.keys)
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
    # Opaque OpenStack tokens, validated at Keystone v3 (beside any JWT issuer).
    keystone: KeystoneConfig | None = None

    _exp_always_required = field_validator("required_claims")(_with_exp)

    @field_validator("realm")
    @classmethod
    def _quotable(cls, value: str) -> str:
        # It goes into WWW-Authenticate as a quoted string (RFC 9110 §5.6.4).
        if not re.fullmatch(r"[\x20-\x7e]+", value) or '"' in value or "\\" in value:
            raise ValueError("must be printable ASCII without quotes or backslashes")
        return value

    @property
    def trusted_issuers(self) -> list[IssuerConfig]:
        top: list[IssuerConfig] = []
        if self.keys or self.jwks is not None:
            top.append(IssuerConfig(**{name: getattr(self, name) for name in _ISSUER_FIELDS}))
        return [*top, *self.issuers]

    @model_validator(mode="after")
    def _issuers_distinct(self) -> Self:
        if not self.keys and self.jwks is None and not self.issuers and self.keystone is None:
            raise ValueError(
                "trust at least one issuer: give keys or jwks, list issuers, or give keystone"
            )
        top_level_named = self.issuer is not None or self.audience is not None
        if top_level_named and not self.keys and self.jwks is None:
            raise ValueError("issuer and audience at the top level need keys or jwks there")
        _unique_kids(self.keys)
        names = [i.issuer for i in self.trusted_issuers]
        if len(names) != len(set(names)):
            raise ValueError("issuers: every issuer must be named once (and at most one unnamed)")
        return self
