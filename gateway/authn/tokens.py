"""Token verification: a JWT in, a VerifiedToken out, or InvalidToken.

This is the one place that decides a token. Algorithms are pinned per key,
never taken from the token: the token's ``alg`` header only selects among
the keys configured for it, so ``none`` and HS256-signed-with-the-RSA-public-
key are refused before PyJWT runs. The token's ``iss`` (read unverified)
selects the trusted issuer whose keys, audience and claim layout apply; its
``kid`` selects the key, from configuration or the issuer's JWKS. Headers
that point elsewhere for keys (``jku``, ``x5u``, ``jwk``, ``x5c``) are
never followed.

Verified tokens are cached by their SHA-256, never past ``exp``; a cache hit
is still checked against the revocations and against the key still being
trusted, so neither a revoked token nor one whose key was rotated out
outlives its removal.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.authn.identity import OPTIONAL_HEADERS, Identity
from gateway.authn.jwks import JwksKeySet
from gateway.authn.keys import SAFE_KID, TrustedKey, key_from_config
from gateway.authn.revocation import RevocationList
from gateway.config import AuthConfig, ClaimPaths, IssuerConfig
from gateway.expiring_lru import ExpiringLRU
from gateway.subject_ids import SUBJECT_ID


class InvalidToken(Exception):
    """The token cannot be trusted; the message is safe to show the client."""


def refuse_if_revoked(
    revocations: RevocationList,
    identity: Identity,
    issued_at: float | None,
    now: float,
    *,
    jti: str | None = None,
    token: str | None = None,
) -> None:
    """InvalidToken when the caller's token is revoked, whichever kind it is."""
    refused = revocations.reason_refused(
        jti=jti,
        token=token,
        user=identity.user_id,
        project=identity.project_id,
        issued_at=issued_at,
        now=now,
    )
    if refused is not None:
        raise InvalidToken(f"The token has been revoked: {refused}.")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    identity: Identity
    issuer: str | None
    key: TrustedKey
    claims: Mapping[str, Any]

    @property
    def jti(self) -> str | None:
        jti = self.claims.get("jti")
        return jti if isinstance(jti, str) else None

    @property
    def expires_at(self) -> float:
        return float(self.claims["exp"])

    @property
    def issued_at(self) -> float | None:
        iat = self.claims.get("iat")
        return float(iat) if isinstance(iat, int | float) else None


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


# Identity values become header values upstream: no control characters (a
# header cannot carry them), and no comma in a role, which X-Roles would split
# into two roles for the backend while the gateway saw one.
HEADER_SAFE = re.compile(r"\A[^\x00-\x1f\x7f]+\Z")
ROLE_NAME = re.compile(r"\A[^\x00-\x1f\x7f,]+\Z")


def identity_from_claims(claims: Mapping[str, Any], paths: ClaimPaths) -> Identity:
    project = claim_at(claims, paths.project)
    user = claim_at(claims, paths.user)
    roles = claim_at(claims, paths.roles)
    if not isinstance(project, str) or not project:
        raise InvalidToken("The token is not scoped to a project.")
    if not isinstance(user, str) or not user:
        raise InvalidToken("The token names no user.")
    if not SUBJECT_ID.fullmatch(project) or not SUBJECT_ID.fullmatch(user):
        raise InvalidToken(
            "The token's project or user id is not 1-255 of A-Z a-z 0-9 and ._~@:+=-"
            " (starting with a letter, digit or _)."
        )
    if roles is None:
        roles = []
    elif isinstance(roles, str):
        roles = roles.replace(",", " ").split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("The token's roles are not a list of strings.")
    if not all(ROLE_NAME.match(r) for r in roles):
        raise InvalidToken("A role in the token is empty or holds a comma or control character.")
    optional: dict[str, Any] = {}
    for field in OPTIONAL_HEADERS:
        path = getattr(paths, field)
        value = None if path is None else claim_at(claims, path)
        if value is not None and not (isinstance(value, str) and HEADER_SAFE.match(value)):
            raise InvalidToken(f"The token's {path} claim is not a plain string.")
        optional[field] = value
    return Identity(
        project_id=project,
        user_id=user,
        roles=frozenset(r.lower() for r in roles),
        **optional,
    )


# RFC 6750 b64token and the URL-safe alphabet of Keystone's Fernet tokens are
# both inside it; nothing else a header could carry is a token.
_TOKEN_CHARS = re.compile(r"\A[\x21-\x7e]+\Z")
# What PyJWT's JSON parsing lets escape on hostile input: nesting deeper than
# the recursion limit, and an exp of Infinity (int() overflows).
_UNREADABLE = (RecursionError, OverflowError)
# Seconds since the epoch of 9999-12-31: a time claim past it is not a time
# (10**400 would overflow every float it meets).
_LATEST_TIME = 253402300799


def _check_times(claims: Mapping[str, Any]) -> None:
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidToken(f"The token's {name} claim is not a number.")
        if not -_LATEST_TIME <= value <= _LATEST_TIME:
            raise InvalidToken(f"The token's {name} claim is out of range.")


class TrustedIssuer:
    """One issuer's keys (configured and fetched), audience and claim layout."""

    def __init__(self, config: IssuerConfig) -> None:
        self.config = config
        self.static_keys = [key_from_config(k) for k in config.keys]
        self.jwks = JwksKeySet(config.jwks) if config.jwks is not None else None
        self.algorithms = frozenset(
            [k.algorithm for k in self.static_keys]
            + (list(config.jwks.algorithms) if config.jwks is not None else [])
        )

    async def candidates(self, kid: str | None, algorithm: str) -> list[TrustedKey]:
        # A configured key without a kid is a candidate for any token.
        keys = [k for k in self.static_keys if kid is None or k.kid in (None, kid)]
        if kid is not None and self.jwks is not None and not any(k.kid == kid for k in keys):
            keys += await self.jwks.keys_for(kid)
        return [k for k in keys if k.algorithm == algorithm]

    def still_trusts(self, key: TrustedKey) -> bool:
        return key in self.static_keys or (self.jwks is not None and self.jwks.has(key))


class JwtVerifier:
    """JWTs of the trusted issuers: a TokenVerifier (gateway.authn.verifier)."""

    def __init__(self, config: AuthConfig, revocations: RevocationList | None = None) -> None:
        self.config = config
        self.issuers = [TrustedIssuer(i) for i in config.trusted_issuers]
        self._by_name = {i.config.issuer: i for i in self.issuers}
        self.revocations = revocations if revocations is not None else RevocationList()
        # Keyed by the token's SHA-256, not the token, so that credentials
        # stay out of memory dumps; an entry dies with the token's exp.
        self.cache: ExpiringLRU[bytes, tuple[VerifiedToken, TrustedIssuer]] = ExpiringLRU(
            config.token_cache_size
        )

    def usable_key_count(self) -> int:
        """Configured keys plus those fetched so far: zero until some key can verify."""
        return sum(len(i.static_keys) for i in self.issuers) + sum(
            k.key_count for k in self.key_sets
        )

    @property
    def key_sets(self) -> list[JwksKeySet]:
        return [i.jwks for i in self.issuers if i.jwks is not None]

    async def open(self) -> None:
        """Load every JWKS before the gateway serves."""
        for key_set in self.key_sets:
            await key_set.open()

    async def close(self) -> None:
        for key_set in self.key_sets:
            await key_set.close()

    def claims(self, token: str) -> bool:
        # Compact JWS: header, payload and signature, joined by two dots.
        return token.count(".") == 2

    async def verify(self, token: str) -> Identity:
        return (await self.inspect(token)).identity

    async def inspect(self, token: str) -> VerifiedToken:
        if len(token) > self.config.max_token_bytes:
            raise InvalidToken("The token is too large.")
        # A header may carry any byte (aiohttp hands non-UTF-8 ones on as
        # surrogates): hashed as they came.
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = time.time()
        cached = self.cache.get(digest, now)
        if cached is not None and cached[1].still_trusts(cached[0].key):
            # The very same bytes passed every check below when they were cached.
            verified = cached[0]
        else:
            if not _TOKEN_CHARS.match(token):
                # A token is printable ASCII.
                raise InvalidToken("The token is malformed.")
            verified, issuer = await self._decode(token)
            self.cache.put(digest, (verified, issuer), verified.expires_at)
        if self.revocations:
            # Nothing revoked is the common case: then no claim is read again
            # and no revocation looked up.
            refuse_if_revoked(
                self.revocations, verified.identity, verified.issued_at, now, jti=verified.jti
            )
        return verified

    def _issuer_of(self, token: str) -> TrustedIssuer:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, *_UNREADABLE):
            raise InvalidToken("The token is malformed.") from None
        name = unverified.get("iss")
        issuer = self._by_name.get(name) if isinstance(name, str) else None
        # An issuer configured without a name takes tokens no named one claims.
        issuer = issuer or self._by_name.get(None)
        if issuer is None:
            raise InvalidToken("The token's issuer is not trusted.")
        return issuer

    async def _decode(self, token: str) -> tuple[VerifiedToken, TrustedIssuer]:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, *_UNREADABLE):
            raise InvalidToken("The token is malformed.") from None
        issuer = self._issuer_of(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in issuer.algorithms:
            raise InvalidToken("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not SAFE_KID.match(kid)):
            raise InvalidToken("The token's key id is malformed.")
        candidates = await issuer.candidates(kid, algorithm)
        if not candidates:
            raise InvalidToken("The token was signed with an unknown key.")
        for key in candidates:
            claims = self._decode_with(token, key, issuer.config)
            if claims is not None:
                _check_times(claims)
                identity = identity_from_claims(claims, issuer.config.claims)
                return VerifiedToken(identity, issuer.config.issuer, key, claims), issuer
        raise InvalidToken("The token's signature does not verify.")

    def _decode_with(
        self, token: str, key: TrustedKey, issuer: IssuerConfig
    ) -> dict[str, Any] | None:
        """The claims, None when this key's signature does not match, or InvalidToken."""
        try:
            return jwt.decode(
                token,
                key.material,
                algorithms=[key.algorithm],
                issuer=issuer.issuer,
                audience=issuer.audience,
                leeway=self.config.leeway,
                options={"require": issuer.required_claims},
            )
        except jwt.InvalidSignatureError:
            # Several keys may share an algorithm and lack a kid: try each.
            return None
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("The token is not valid yet.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The token's issuer is not trusted.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The token is not meant for this service.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The token lacks the {exc.claim!r} claim.") from None
        except (jwt.PyJWTError, *_UNREADABLE):
            raise InvalidToken("The token is malformed.") from None
