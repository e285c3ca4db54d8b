"""Token verification: a JWT in, an Identity out, or InvalidToken.

Algorithms are pinned per key, never taken from the token: the token's
``alg`` header only selects among the keys configured for it, so ``none``
and HS256-signed-with-the-RSA-public-key are refused before PyJWT runs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.cache import ExpiringLRU
from gateway.config import AuthConfig, ClaimPaths, JwtPublicKey
from gateway.identity import Identity


class InvalidToken(Exception):
    """The token cannot be trusted; the message is safe to show the client."""


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    algorithm: str
    material: bytes | JwtPublicKey


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def identity_from_claims(claims: Mapping[str, Any], paths: ClaimPaths) -> Identity:
    project = claim_at(claims, paths.project)
    user = claim_at(claims, paths.user)
    roles = claim_at(claims, paths.roles)
    if not isinstance(project, str) or not project:
        raise InvalidToken("The token is not scoped to a project.")
    if not isinstance(user, str) or not user:
        raise InvalidToken("The token names no user.")
    if roles is None:
        roles = []
    elif isinstance(roles, str):
        roles = roles.replace(",", " ").split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("The token's roles are not a list of strings.")
    return Identity(project_id=project, user_id=user, roles=frozenset(r.lower() for r in roles))


class TokenVerifier:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._keys = [_Key(k.kid, k.algorithm, k.key()) for k in config.keys]
        self._algorithms = frozenset(k.algorithm for k in self._keys)
        # Keyed by the token's SHA-256, not the token, so that credentials
        # stay out of memory dumps; an entry dies with the token's exp.
        self.cache: ExpiringLRU[bytes, Identity] = ExpiringLRU(config.token_cache_size)

    def verify(self, token: str) -> Identity:
        if len(token) > self.config.max_token_bytes:
            raise InvalidToken("The token is too large.")
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        cached = self.cache.get(digest, now)
        if cached is not None:
            return cached
        claims = self._decode(token)
        identity = identity_from_claims(claims, self.config.claims)
        self.cache.put(digest, identity, float(claims["exp"]))
        return identity

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The token is malformed.") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise InvalidToken("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        # A configured key without a kid is a candidate for any token.
        candidates = [
            k
            for k in self._keys
            if k.algorithm == algorithm and (kid is None or k.kid is None or k.kid == kid)
        ]
        if not candidates:
            raise InvalidToken("The token was signed with an unknown key.")
        last_error: jwt.PyJWTError | None = None
        for key in candidates:
            try:
                return jwt.decode(
                    token,
                    key.material,
                    algorithms=[key.algorithm],
                    issuer=self.config.issuer,
                    audience=self.config.audience,
                    leeway=self.config.leeway,
                    options={"require": self.config.required_claims},
                )
            except jwt.InvalidSignatureError as exc:
                # Several keys may share an algorithm and lack a kid: try each.
                last_error = exc
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
            except jwt.PyJWTError:
                raise InvalidToken("The token is malformed.") from None
        assert last_error is not None
        raise InvalidToken("The token's signature does not verify.")
