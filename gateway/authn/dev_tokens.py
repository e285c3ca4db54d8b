"""Minting development tokens with the config's ``auth.dev_signing_key``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import jwt

from gateway.config import AuthConfig


def _set_claim(claims: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = claims
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def mint_token(
    auth: AuthConfig,
    *,
    project: str,
    user: str,
    roles: Sequence[str],
    ttl: float = 3600,
    now: float | None = None,
) -> str:
    key = auth.dev_signing_key
    if key is None:
        raise ValueError("the configuration has no auth.dev_signing_key")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"iat": issued, "exp": issued + int(ttl), "jti": uuid.uuid4().hex}
    # Dev tokens are for the first trusted issuer, in its claim layout.
    issuer = auth.trusted_issuers[0]
    if issuer.issuer is not None:
        claims["iss"] = issuer.issuer
    if issuer.audience is not None:
        claims["aud"] = issuer.audience
    _set_claim(claims, issuer.claims.project, project)
    _set_claim(claims, issuer.claims.user, user)
    _set_claim(claims, issuer.claims.roles, list(roles))
    headers = {"kid": key.kid} if key.kid is not None else None
    return jwt.encode(claims, key.key(), algorithm=key.algorithm, headers=headers)  # type: ignore[arg-type]
