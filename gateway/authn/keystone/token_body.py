"""A Keystone v3 token body in, the caller's identity out, or InvalidToken.

Keystone's answer is the one thing trusted here, and it is still checked:
anything but the documented shape (a project-scoped token with a user,
roles and an expiry) is refused with a reason, never half-read. The same
record is what the caches keep, so a cached entry is checked the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.authn.identity import Identity
from gateway.authn.tokens import HEADER_SAFE, ROLE_NAME, InvalidToken
from gateway.subject_ids import SUBJECT_ID


@dataclass(frozen=True, slots=True)
class KeystoneToken:
    identity: Identity
    expires_at: float
    issued_at: float | None
    # The token's own audit id: what Keystone's revocation events name.
    audit_id: str | None


def _text(value: Any, what: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not HEADER_SAFE.match(value):
        raise InvalidToken(f"Keystone's reply has no usable {what}.")
    return value


def _entity(token: Mapping[str, Any], name: str) -> tuple[str, str | None, str | None, str | None]:
    """id, name, domain id, domain name of the token's user or project."""
    entity = token.get(name)
    if not isinstance(entity, Mapping):
        if name == "project":
            raise InvalidToken("The token is not scoped to a project.")
        raise InvalidToken(f"Keystone's reply has no {name}.")
    domain = entity.get("domain", {})
    if not isinstance(domain, Mapping):
        raise InvalidToken(f"Keystone's reply has a malformed {name} domain.")
    ident = _text(entity.get("id"), f"{name} id")
    assert ident is not None
    if not SUBJECT_ID.fullmatch(ident):
        # The same ids as a JWT's: they go into keys, URLs and headers.
        raise InvalidToken(f"Keystone's {name} id is outside the documented character set.")
    return (
        ident,
        _text(entity.get("name"), f"{name} name", required=False),
        _text(domain.get("id"), f"{name} domain id", required=False),
        _text(domain.get("name"), f"{name} domain name", required=False),
    )


def _timestamp(value: Any, what: str, *, required: bool = True) -> float | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidToken(f"Keystone's reply has no {what}.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidToken(f"Keystone's reply has a malformed {what}.") from None
    if moment.tzinfo is None:
        raise InvalidToken(f"Keystone's reply has a {what} without a time zone.")
    return moment.timestamp()


def _roles(token: Mapping[str, Any]) -> frozenset[str]:
    roles = token.get("roles")
    if not isinstance(roles, list):
        raise InvalidToken("Keystone's reply has no role list.")
    names = [role.get("name") if isinstance(role, Mapping) else None for role in roles]
    if not all(isinstance(n, str) and ROLE_NAME.match(n) for n in names):
        raise InvalidToken("A role in Keystone's reply is unnamed or holds a comma.")
    return frozenset(str(n).lower() for n in names)


def parse_token_body(body: Any) -> KeystoneToken:
    """The ``{"token": {...}}`` of GET /v3/auth/tokens (or POST) as a KeystoneToken."""
    token = body.get("token") if isinstance(body, Mapping) else None
    if not isinstance(token, Mapping):
        raise InvalidToken("Keystone's reply is not a token.")
    user_id, user_name, user_domain_id, user_domain_name = _entity(token, "user")
    project_id, project_name, project_domain_id, project_domain_name = _entity(token, "project")
    admin_project = token.get("is_admin_project", True)
    if not isinstance(admin_project, bool):
        raise InvalidToken("Keystone's reply has a malformed is_admin_project.")
    audit_ids = token.get("audit_ids", [])
    if not isinstance(audit_ids, list) or not all(isinstance(a, str) for a in audit_ids):
        raise InvalidToken("Keystone's reply has malformed audit_ids.")
    expires_at = _timestamp(token.get("expires_at"), "expires_at")
    assert expires_at is not None
    identity = Identity(
        project_id=project_id,
        user_id=user_id,
        roles=_roles(token),
        project_name=project_name,
        project_domain_id=project_domain_id,
        user_name=user_name,
        user_domain_id=user_domain_id,
        project_domain_name=project_domain_name,
        user_domain_name=user_domain_name,
        # Keystone leaves it out unless an admin project is configured, and
        # keystonemiddleware then reads it as true.
        is_admin_project=admin_project,
    )
    return KeystoneToken(
        identity,
        expires_at,
        _timestamp(token.get("issued_at"), "issued_at", required=False),
        audit_ids[0] if audit_ids else None,
    )


_RECORD_FIELDS = (
    "project_id",
    "user_id",
    "project_name",
    "project_domain_id",
    "user_name",
    "user_domain_id",
    "project_domain_name",
    "user_domain_name",
    "is_admin_project",
)


def to_record(token: KeystoneToken) -> bytes:
    """What the shared cache keeps (sealed): only what the identity needs."""
    identity = token.identity
    record: dict[str, Any] = {f: getattr(identity, f) for f in _RECORD_FIELDS}
    record.update(
        roles=sorted(identity.roles),
        expires_at=token.expires_at,
        issued_at=token.issued_at,
        audit_id=token.audit_id,
    )
    return json.dumps(record, separators=(",", ":")).encode()


def from_record(data: bytes) -> KeystoneToken:
    """A record ``to_record`` wrote; anything else raises ValueError."""
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError("not a token record")
    try:
        identity = Identity(
            roles=frozenset(record["roles"]), **{f: record[f] for f in _RECORD_FIELDS}
        )
        return KeystoneToken(
            identity, float(record["expires_at"]), record["issued_at"], record["audit_id"]
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a token record: {exc}") from None
