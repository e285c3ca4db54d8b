"""The identity-header contract between the gateway and the image backend.

The backend trusts these headers as keystonemiddleware's auth_token would set
them for Glance, so this module is the one place that decides their values;
gateway.http.header_boundary keeps every client header off the upstream
request unless it is on the allow-list, so only ours arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the caller is."""

    project_id: str
    user_id: str
    # Lower case, as Glance's policy engine compares them.
    roles: frozenset[str]
    # Sent upstream when the token carries them, as keystonemiddleware does;
    # no decision depends on them.
    project_name: str | None = None
    project_domain_id: str | None = None
    user_name: str | None = None
    user_domain_id: str | None = None
    # Known for Keystone tokens (keystonemiddleware sends them too).
    project_domain_name: str | None = None
    user_domain_name: str | None = None
    is_admin_project: bool | None = None
    # The service token's identity, when a service called on a user's behalf.
    service: Identity | None = None

    def has_any_role(self, roles: frozenset[str]) -> bool:
        return not self.roles.isdisjoint(roles)


# Identity fields keystonemiddleware sends when it knows them, by header.
OPTIONAL_HEADERS: dict[str, str] = {
    "project_name": "X-Project-Name",
    "project_domain_id": "X-Project-Domain-Id",
    "user_name": "X-User-Name",
    "user_domain_id": "X-User-Domain-Id",
}


# What only a Keystone token tells, by header.
KEYSTONE_HEADERS: dict[str, str] = {
    "project_domain_name": "X-Project-Domain-Name",
    "user_domain_name": "X-User-Domain-Name",
}
_FIELD_HEADERS = OPTIONAL_HEADERS | KEYSTONE_HEADERS


def _service_headers(service: Identity) -> dict[str, str]:
    headers = {
        "X-Service-Identity-Status": "Confirmed",
        "X-Service-Project-Id": service.project_id,
        "X-Service-User-Id": service.user_id,
        "X-Service-Roles": ",".join(sorted(service.roles)),
    }
    for field, header in _FIELD_HEADERS.items():
        value = getattr(service, field)
        if value is not None:
            headers[header.replace("X-", "X-Service-", 1)] = value
    return headers


def backend_roles(roles: frozenset[str], mapping: Mapping[str, Sequence[str]]) -> list[str]:
    """The token's roles as the backend knows them: each mapped role replaced
    by its backend roles, the others kept; sorted, without repeats."""
    mapped: set[str] = set()
    for role in roles:
        mapped.update(mapping.get(role, (role,)))
    return sorted(mapped)


# Identity headers in the order they are sent, the request id left out.
HeaderPairs = tuple[tuple[str, str], ...]


def caller_headers(identity: Identity, role_mapping: Mapping[str, Sequence[str]]) -> HeaderPairs:
    """Every identity header but the request id: the same on each request of one identity."""
    headers = [
        ("X-Identity-Status", "Confirmed"),
        ("X-Project-Id", identity.project_id),
        ("X-Tenant-Id", identity.project_id),
        ("X-User-Id", identity.user_id),
        ("X-Roles", ",".join(backend_roles(identity.roles, role_mapping))),
    ]
    for field, header in _FIELD_HEADERS.items():
        value = getattr(identity, field)
        if value is not None:
            headers.append((header, value))
    if identity.is_admin_project is not None:
        headers.append(("X-Is-Admin-Project", str(identity.is_admin_project)))
    if identity.service is not None:
        headers.extend(_service_headers(identity.service).items())
    return tuple(headers)


class IdentityHeaders:
    """Each caller's identity headers, made once and kept.

    A token is verified once and then cached, so the same Identity comes back
    request after request; its headers (roles mapped, sorted and joined) are
    made on its first request only. Equal identities share one entry.
    """

    def __init__(self, role_mapping: Mapping[str, Sequence[str]], size: int = 4096) -> None:
        self.role_mapping = role_mapping
        self._made = lru_cache(maxsize=size)(self._make)

    def __call__(self, identity: Identity) -> HeaderPairs:
        return self._made(identity)

    def _make(self, identity: Identity) -> HeaderPairs:
        return caller_headers(identity, self.role_mapping)
