"""Signing and verification keys: algorithms, HMAC secrets and PEM key material.

Every key is loaded while the configuration is validated, so that a bad key
fails at start-up with its key path rather than on the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import SecretStr, ValidationInfo, field_validator, model_validator

from gateway.config._base import _resolve, _Section

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# fmt: off
# One line per family: HMAC, RSA (PKCS#1 v1.5 and PSS), elliptic curves.
Algorithm = Literal[
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
]
# fmt: on

# RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
MIN_HMAC_SECRET_BYTES = 32

JwtPublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_KEY_FAMILY: Mapping[str, type | tuple[type, ...]] = {
    "RS": rsa.RSAPublicKey,
    "PS": rsa.RSAPublicKey,
    "ES": ec.EllipticCurvePublicKey,
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}


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


def _hmac_secret(secret: SecretStr | None, algorithm: str) -> bytes:
    if secret is None:
        raise ValueError(f"{algorithm} needs a secret")
    raw = secret.get_secret_value().encode()
    if len(raw) < MIN_HMAC_SECRET_BYTES:
        raise ValueError(f"{algorithm} secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
    return raw


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

    def _pem(self, inline: str | None, file: Path | None, what: str) -> bytes | None:
        """The PEM an asymmetric algorithm needs, or None for HMAC, which takes
        the secret; material of the other kind is refused, never ignored."""
        kind = what.replace("_", " ")
        if self.algorithm in HMAC_ALGORITHMS:
            if inline is not None or file is not None:
                raise ValueError(f"{self.algorithm} takes a secret, not a {kind}")
            return None
        if self.secret is not None:
            raise ValueError(f"{self.algorithm} takes a {kind}, not a secret")
        return _read_pem(inline, file, what)


class VerificationKey(_Key):
    """A key tokens may be signed with: an HMAC secret or a public key."""

    public_key: str | None = None
    public_key_file: Path | None = None

    def key(self) -> bytes | JwtPublicKey:
        pem = self._pem(self.public_key, self.public_key_file, "public_key")
        if pem is None:
            return _hmac_secret(self.secret, self.algorithm)
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
        pem = self._pem(self.private_key, self.private_key_file, "private_key")
        if pem is None:
            return _hmac_secret(self.secret, self.algorithm)
        try:
            return serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("private key is not an unencrypted PEM private key") from None
