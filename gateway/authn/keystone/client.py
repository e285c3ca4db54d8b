"""Talking to Keystone v3: the gateway's own service token, and token validation.

The service token is obtained when the gateway starts, renewed before it
expires (``service_token_renew_before``) by the first request that needs it
then, and obtained again when Keystone answers 401 to it (revoked, or
Keystone's keys rotated). Concurrent renewals share one request. The
validation endpoint is the catalog's identity endpoint for the configured
interface, as keystonemiddleware picks it, or ``auth_url`` itself.

One keep-alive aiohttp session serves every call: validations are rare
(at most one per token per cache TTL for the fleet), but each one is on some
caller's request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.authn.keystone.token_body import parse_token_body
from gateway.authn.tokens import InvalidToken
from gateway.config import KeystoneConfig

log = logging.getLogger("gateway.keystone")


class KeystoneUnavailable(Exception):
    """Keystone could not say whether a token is valid: the caller gets 503."""


class KeystoneClient:
    def __init__(self, config: KeystoneConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._service_token: str | None = None
        self._service_expires_at = 0.0
        self._renewal = asyncio.Lock()
        self.validation_url = f"{config.auth_url}/v3/auth/tokens"
        # Plain counts, mirrored into Prometheus by the app.
        self.service_token_issued = 0
        self.validations = 0
        # Called with the seconds each Keystone exchange took.
        self.observe_latency: Callable[[float], None] = lambda seconds: None

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=self.config.timeout, sock_connect=self.config.connect_timeout
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=self.config.client_tls.context())
        )
        try:
            await self.service_token()
        except KeystoneUnavailable as exc:
            # Not fatal: /readyz says so, and the first request tries again.
            log.error("keystone: no service token at start: %s", exc)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KeystoneClient.open() was not awaited")
        return self._session

    @property
    def service_token_expires_at(self) -> float | None:
        return self._service_expires_at if self._service_token is not None else None

    async def service_token(self) -> str:
        token = self._service_token
        if token is not None and time.time() < self._renew_at():
            return token
        async with self._renewal:
            # Whoever held the lock before may have renewed it already.
            if self._service_token is None or time.time() >= self._renew_at():
                await self._authenticate()
            assert self._service_token is not None
            return self._service_token

    def _renew_at(self) -> float:
        return self._service_expires_at - self.config.service_token_renew_before

    def forget_service_token(self, token: str) -> None:
        if self._service_token == token:
            self._service_token = None

    def _auth_request(self) -> dict[str, Any]:
        config = self.config
        if config.application_credential is not None:
            credential = config.application_credential
            identity: dict[str, Any] = {
                "methods": ["application_credential"],
                "application_credential": {
                    "id": credential.id,
                    "secret": credential.secret.get_secret_value(),
                },
            }
            return {"auth": {"identity": identity}}
        assert config.password is not None
        password = config.password
        user = {
            "name": password.username,
            "domain": {"name": password.user_domain_name},
            "password": password.password.get_secret_value(),
        }
        project = {"name": password.project_name, "domain": {"name": password.project_domain_name}}
        identity = {"methods": ["password"], "password": {"user": user}}
        return {"auth": {"identity": identity, "scope": {"project": project}}}

    async def _authenticate(self) -> None:
        url = f"{self.config.auth_url}/v3/auth/tokens"
        if self.config.interface is None:
            url += "?nocatalog"
        try:
            status, headers, body = await self._exchange(
                "POST", url, json_body=self._auth_request()
            )
        except InvalidToken as exc:
            # Keystone's garbled answer to the gateway is no verdict on a caller.
            raise KeystoneUnavailable(f"the gateway's own token: {exc}") from None
        if status != 201:
            raise KeystoneUnavailable(f"Keystone refused the gateway's credentials ({status})")
        token = headers.get("X-Subject-Token")
        try:
            expires_at = parse_token_body(body).expires_at
        except InvalidToken as exc:
            raise KeystoneUnavailable(f"the gateway's own token is unusable: {exc}") from None
        if not token:
            raise KeystoneUnavailable("Keystone issued no service token (X-Subject-Token)")
        self.validation_url = self._validation_url(body)
        self._service_token = token
        self._service_expires_at = expires_at
        self.service_token_issued += 1
        log.info("keystone: service token obtained, valid for %.0f s", expires_at - time.time())

    def _validation_url(self, body: Any) -> str:
        interface = self.config.interface
        if interface is not None:
            catalog = body.get("token", {}).get("catalog", [])
            for service in catalog if isinstance(catalog, list) else []:
                if not isinstance(service, dict) or service.get("type") != "identity":
                    continue
                for endpoint in service.get("endpoints", []):
                    if isinstance(endpoint, dict) and endpoint.get("interface") == interface:
                        base = str(endpoint.get("url", "")).rstrip("/").removesuffix("/v3")
                        if base.startswith(("http://", "https://")):
                            return f"{base}/v3/auth/tokens"
            log.warning("keystone: no %s identity endpoint in the catalog: auth_url", interface)
        return f"{self.config.auth_url}/v3/auth/tokens"

    async def validate(self, token: str) -> Any:
        """Keystone's body for a valid token; InvalidToken for one it does not know."""
        for attempt in (1, 2):
            service_token = await self.service_token()
            headers = {"X-Auth-Token": service_token, "X-Subject-Token": token}
            self.validations += 1
            status, _, body = await self._exchange(
                "GET", self.validation_url + "?nocatalog", headers=headers
            )
            if status == 200:
                return body
            if status == 404:
                raise InvalidToken("Keystone does not know the token (invalid, expired, revoked).")
            if status == 401 and attempt == 1:
                # Our own token was refused: obtain a new one and ask again.
                self.forget_service_token(service_token)
                continue
            if status in (401, 403):
                raise KeystoneUnavailable(f"Keystone refused the gateway's own token ({status})")
            raise KeystoneUnavailable(f"Keystone answered {status}")
        raise AssertionError("unreachable")

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> tuple[int, Any, Any]:
        started = time.perf_counter()
        try:
            async with self.session.request(method, url, headers=headers, json=json_body) as r:
                raw = await r.content.read(self.config.max_response_bytes + 1)
                status, response_headers = r.status, r.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KeystoneUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        finally:
            self.observe_latency(time.perf_counter() - started)
        if len(raw) > self.config.max_response_bytes:
            raise KeystoneUnavailable("Keystone's reply is too large")
        if status >= 500 or status in (401, 403, 404):
            return status, response_headers, None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            if status < 300:
                raise InvalidToken("Keystone's reply is not JSON.") from None
            body = None
        return status, response_headers, body
