"""Verification keys, from configuration or from a JSON Web Key (RFC 7517)."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.config import HMAC_ALGORITHMS, JwtPublicKey, VerificationKey

# A kid is compared, never used as a path or a URL; anything else in it (a
# slash, a control character) marks a forged token, refused before any fetch.
SAFE_KID = re.compile(r"\A[A-Za-z0-9._~+=:\-]{1,256}\Z")


@dataclass(frozen=True, slots=True, eq=False)
class TrustedKey:
    """One key and the one algorithm it verifies. Compared by identity."""

    kid: str | None
    algorithm: str
    material: bytes | JwtPublicKey
    # Where it came from, for `explain`: "config" or the JWKS URL.
    source: str


def key_from_config(key: VerificationKey) -> TrustedKey:
    return TrustedKey(key.kid, key.algorithm, key.key(), "config")


def keys_from_jwk(
    jwk: Mapping[str, Any], algorithms: Collection[str], source: str
) -> list[TrustedKey]:
    """The keys a JWK yields for the configured algorithms; [] for one it cannot.

    A JWK naming its ``alg`` is used for that algorithm only; one without is
    tried for every configured algorithm that fits its key type. Secrets
    (``kty: oct``) are never accepted from a key set.
    """
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not SAFE_KID.match(kid) or jwk.get("kty") == "oct":
        return []
    if jwk.get("use", "sig") != "sig":
        return []
    named = jwk.get("alg")
    wanted = [a for a in algorithms if named is None or a == named]
    keys = []
    for algorithm in wanted:
        if algorithm in HMAC_ALGORITHMS:
            continue
        try:
            parsed = jwt.PyJWK(dict(jwk), algorithm=algorithm)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        keys.append(TrustedKey(kid, algorithm, parsed.key, source))
    return keys


def fingerprint(jwk: Mapping[str, Any]) -> str:
    """A stable text of a JWK, so an unchanged key keeps its TrustedKey across refetches."""
    return json.dumps(jwk, sort_keys=True, separators=(",", ":"))
