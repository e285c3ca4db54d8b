"""Which verifier decides a token: its shape picks among the kinds trusted.

The verifiers are the configured kinds of token (gateway.authn.verifier), in
order. With one, it decides every token without a look at it. With several,
the first that claims a token decides it, and the last decides whatever the
others do not claim: a JWT is three dot-separated parts, a Keystone token
(Fernet) one run of URL-safe base64 that never holds a dot, so counting the
dots is the whole cost of the choice on the hot path.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any

from gateway.authn.identity import Identity
from gateway.authn.tokens import InvalidToken
from gateway.authn.verifier import InspectedToken, TokenVerifier


class Authenticator:
    def __init__(
        self, verifiers: Sequence[TokenVerifier], service: TokenVerifier | None = None
    ) -> None:
        """``service``: the verifier of X-Service-Token, when service tokens are on."""
        if not verifiers:
            raise ValueError("an authenticator needs at least one token verifier")
        self.verifiers = tuple(verifiers)
        self.service = service
        self._only = self.verifiers[0] if len(self.verifiers) == 1 else None
        self._claiming = self.verifiers[:-1]
        self._last = self.verifiers[-1]

    def inspect(self, token: str) -> Coroutine[Any, Any, InspectedToken]:
        """The deciding verifier's inspection of ``token``, to await."""
        # Its coroutine itself, not one awaiting it: one frame fewer for every
        # request to suspend and resume through.
        only = self._only
        if only is not None:
            return only.inspect(token)
        for verifier in self._claiming:
            if verifier.claims(token):
                return verifier.inspect(token)
        return self._last.inspect(token)

    async def with_service(self, identity: Identity, service_token: str | None) -> Identity:
        """The identity with the X-Service-Token's, when service tokens are on."""
        service = self.service
        if service_token is None or service is None:
            return identity
        try:
            verified = await service.verify(service_token)
        except InvalidToken as exc:
            raise InvalidToken(f"X-Service-Token: {exc}") from None
        return replace(identity, service=verified)
