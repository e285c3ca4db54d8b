"""The test signing keys, and the JWTs the tests make with them.

The issuer and audience are the ones ``gateway_config.config_data`` trusts,
so a token from ``TokenFactory`` passes authentication unless a test says
otherwise.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HS_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
ISSUER = "https://idp.test"
AUDIENCE = "image-api"


@dataclass(frozen=True)
class Keys:
    rsa_private: rsa.RSAPrivateKey
    rsa_public_pem: str
    ec_private: ec.EllipticCurvePrivateKey
    ec_public_pem: str


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def new_keys() -> Keys:
    """A fresh RSA and EC key pair (slow enough that the suite makes one per session)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return Keys(rsa_key, _public_pem(rsa_key), ec_key, _public_pem(ec_key))


@dataclass
class TokenFactory:
    keys: Keys

    def __call__(
        self,
        project: str = "project-a",
        user: str = "alice",
        roles: list[str] | None = None,
        *,
        kid: str = "rsa",
        ttl: float = 600,
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + int(ttl),
            "jti": uuid.uuid4().hex,
            "sub": user,
            "project_id": project,
            "roles": ["cloudImages:admin"] if roles is None else roles,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        key: Any = {"rsa": self.keys.rsa_private, "ec": self.keys.ec_private, "hs": HS_SECRET}[kid]
        algorithm = {"rsa": "RS256", "ec": "ES256", "hs": "HS256"}[kid]
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})
