"""Keys and seals for cached Keystone tokens: an entry names no token and tells nothing.

As keystonemiddleware's ``memcache_security_strategy: ENCRYPT``, from one
shared secret two keys are derived (HKDF-SHA256): one for the cache key, a
keyed hash (keyed BLAKE2b) of the token, so that Redis never holds a token
nor a hash anyone can check a guessed token against; one for AES-256-GCM,
which encrypts and authenticates each entry. AES-GCM rather than Fernet:
it takes associated data, and the entry's own cache key is bound in as
such, so an entry copied under another token's key does not open (Fernet
would accept it); it is also smaller (no base64, no CBC padding) and
faster. A tampered, truncated or misplaced entry opens to None: a miss,
never an identity.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class TokenSealer:
    def __init__(self, secret: bytes | None = None) -> None:
        # Without a shared secret (no shared cache) each process has its own.
        secret = secret if secret is not None else os.urandom(32)
        self._hash_key = _derive(secret, b"image-gateway keystone token hash")
        self._aead = AESGCM(_derive(secret, b"image-gateway keystone token cache"))

    def digest(self, token: str) -> bytes:
        # Keyed BLAKE2b is a MAC by design (RFC 7693) and costs one pass, as
        # the JWT path's SHA-256 does; HMAC-SHA256 costs two and was measurably
        # slower here (bench/keystone_tokens.py), on every request.
        data = token.encode(errors="surrogatepass")
        return hashlib.blake2b(data, key=self._hash_key, digest_size=32).digest()

    def seal(self, digest: bytes, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, digest)

    def open(self, digest: bytes, sealed: bytes) -> bytes | None:
        if len(sealed) <= _NONCE_BYTES:
            return None
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], digest)
        except InvalidTag:
            return None
