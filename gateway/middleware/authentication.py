"""Authentication: the caller's token, from X-Auth-Token or a Bearer header.

Malformed credentials are 400 and unusable ones 401, as RFC 6750 §3.1 has
it (invalid_request vs invalid_token). Keystone unable to answer is 503.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from gateway.authn.authenticator import Authenticator
from gateway.authn.keystone.client import KeystoneUnavailable
from gateway.authn.tokens import InvalidToken
from gateway.http.faults import GatewayFault
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import context_of

log = logging.getLogger("gateway.authn")

# RFC 6750 §2.1 b64token, which every JWT is.
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")


class AuthenticationMiddleware(Middleware):
    def __init__(self, verifier: Authenticator, realm: str) -> None:
        # auth.realm is validated with the configuration (quotable as is).
        self.verifier = verifier
        self.realm = realm

    def _challenge(self, error: str | None = None, description: str | None = None) -> str:
        challenge = f'Bearer realm="{self.realm}"'
        if error is not None:
            challenge += f', error="{error}"'
        if description is not None:
            challenge += f', error_description="{description}"'
        return challenge

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        if ctx.route is None or not ctx.route.authenticated:
            # Not a proxied operation, or version discovery, which Glance
            # (and keystoneauth, which asks it first) expects without a token.
            return await handler(request)
        ctx.step = "authentication"
        token = self._credential(request)
        service_token = request.headers.get("X-Service-Token")
        try:
            ctx.token = await self.verifier.inspect(token)
            identity = ctx.token.identity
            if service_token is not None:
                identity = await self.verifier.with_service(identity, service_token)
            ctx.identity = identity
        except KeystoneUnavailable:
            # Never a pass and never a 401: the token may well be good.
            # (Logged once per interval by the Keystone validator.)
            raise GatewayFault(
                503,
                "The identity service is unavailable; try again later.",
                cause="keystone_unavailable",
            ) from None
        except InvalidToken as exc:
            log.info("token refused: %s", exc, extra={"request_id": ctx.request_id})
            raise GatewayFault(
                401,
                "The request you have made requires authentication.",
                details=str(exc),
                headers={"WWW-Authenticate": self._challenge("invalid_token", str(exc))},
            ) from None
        return await handler(request)

    def _credential(self, request: web.Request) -> str:
        auth_tokens = request.headers.getall("X-Auth-Token", [])
        authorizations = request.headers.getall("Authorization", [])
        if len(auth_tokens) > 1 or len(authorizations) > 1:
            raise GatewayFault(400, "Send one credential, not several.")
        bearer: str | None = None
        if authorizations:
            scheme, _, value = authorizations[0].strip().partition(" ")
            if scheme.lower() == "bearer":
                bearer = value.strip()
                if not _B64TOKEN.match(bearer):
                    raise GatewayFault(
                        400,
                        "Malformed Authorization header.",
                        headers={"WWW-Authenticate": self._challenge("invalid_request")},
                    )
        if auth_tokens and bearer is not None:
            raise GatewayFault(400, "Send the token in X-Auth-Token or Authorization, not both.")
        token = auth_tokens[0].strip() if auth_tokens else bearer
        if not token:
            raise GatewayFault(
                401,
                "The request you have made requires authentication.",
                details="No token in X-Auth-Token or Authorization: Bearer.",
                headers={"WWW-Authenticate": self._challenge()},
            )
        return token
