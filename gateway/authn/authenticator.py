"""Which verifier decides a token: its shape picks the JWT or the Keystone path.

A JWT is three dot-separated parts; a Keystone token (Fernet) is one run of
URL-safe base64 and never holds a dot. Both kinds may be trusted at once.
Counting the dots is the whole cost of the choice on the hot path.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from gateway.authn.identity import Identity
from gateway.authn.keystone.token_body import KeystoneToken
from gateway.authn.keystone.validator import KeystoneTokens
from gateway.authn.tokens import InvalidToken, TokenVerifier, VerifiedToken


class Authenticator:
    def __init__(self, jwt: TokenVerifier, keystone: KeystoneTokens | None) -> None:
        self.jwt = jwt
        self.keystone = keystone
        # With no JWT issuer every token is Keystone's to decide.
        self._jwt_trusted = bool(jwt.issuers)

    def inspect(self, token: str) -> Coroutine[Any, Any, VerifiedToken | KeystoneToken]:
        """The verifier's inspection of ``token``, to await."""
        # Its coroutine itself, not one awaiting it: one frame fewer for every
        # request to suspend and resume through.
        keystone = self.keystone
        if keystone is None or (self._jwt_trusted and token.count(".") == 2):
            return self.jwt.inspect(token)
        return keystone.inspect(token)

    async def with_service(self, identity: Identity, service_token: str | None) -> Identity:
        """The identity with the X-Service-Token's, when Keystone service tokens are on."""
        keystone = self.keystone
        if service_token is None or keystone is None or not keystone.config.service_tokens:
            return identity
        try:
            service = await keystone.verify(service_token)
        except InvalidToken as exc:
            raise InvalidToken(f"X-Service-Token: {exc}") from None
        return replace(identity, service=service)
