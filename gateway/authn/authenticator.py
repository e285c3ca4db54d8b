"""Which verifier decides a token: its shape picks the JWT or the Keystone path.

A JWT is three dot-separated parts; a Keystone token (Fernet) is one run of
URL-safe base64 and never holds a dot. Both kinds may be trusted at once.
Counting the dots is the whole cost of the choice on the hot path.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.auth.tokens import InvalidToken, TokenVerifier
from gateway.authn.keystone_tokens import KeystoneTokens
from gateway.identity import Identity


class Authenticator:
    def __init__(self, jwt: TokenVerifier, keystone: KeystoneTokens | None) -> None:
        self.jwt = jwt
        self.keystone = keystone
        # With no JWT issuer every token is Keystone's to decide.
        self._jwt_trusted = bool(jwt.issuers)

    async def verify(self, token: str, service_token: str | None = None) -> Identity:
        keystone = self.keystone
        if keystone is None or (self._jwt_trusted and token.count(".") == 2):
            identity = await self.jwt.verify(token)
        else:
            identity = await keystone.verify(token)
        if service_token is not None and keystone is not None and keystone.config.service_tokens:
            try:
                service = await keystone.verify(service_token)
            except InvalidToken as exc:
                raise InvalidToken(f"X-Service-Token: {exc}") from None
            identity = replace(identity, service=service)
        return identity
