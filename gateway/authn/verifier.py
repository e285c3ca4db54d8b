"""What the gateway asks of a kind of token it trusts: the TokenVerifier protocol.

A kind of token is one module whose verifier has these methods, and one
configuration section; gateway/app.py hands the configured verifiers to the
Authenticator (gateway/authn/authenticator.py), which picks the one that
decides each token by the token's shape. The JWT verifier
(gateway/authn/tokens.py) and the Keystone one
(gateway/authn/keystone/validator.py) are the two there are.
"""

from __future__ import annotations

from typing import Protocol

from gateway.authn.identity import Identity


class InspectedToken(Protocol):
    """What a verifier learned of a token it accepted: the caller, at least."""

    @property
    def identity(self) -> Identity: ...


class TokenVerifier(Protocol):
    def claims(self, token: str) -> bool:
        """Whether ``token`` has this kind's shape. Asked on every request when
        several kinds are trusted: a look at the characters, no parsing, no I/O."""
        ...

    async def open(self) -> None:
        """Load what verifying needs (keys, connections) before the gateway serves."""

    async def close(self) -> None: ...

    async def verify(self, token: str) -> Identity:
        """The caller ``token`` names, or InvalidToken (gateway.authn.tokens)."""
        ...

    async def inspect(self, token: str) -> InspectedToken:
        """All the verifier learned of ``token``, or InvalidToken."""
        ...
