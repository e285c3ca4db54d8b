"""The header boundary: which of the client's headers may reach the backend,
and which of the backend's may reach the client.

An allow-list, not a deny-list. The backend trusts identity headers as
keystonemiddleware's auth_token would set them (auth_token/_request.py
removes everything the client sent of them, then sets its own), and a
deny-list always misses a spelling: a WSGI server that folds ``_`` into
``-`` (wsgiref; gunicorn with ``header_map=dangerous`` or before 22) reads
``X_Roles`` as ``X-Roles``. So only the end-to-end headers a Glance client
legitimately sends pass, compared after folding case and ``_``/``-``; the
gateway then sets its own identity headers on top (gateway.identity).

Dropped headers that look like identity or credentials are logged by name
(never value), once per request, and counted: a client sending them is
trying to speak for the gateway, which an operator wants to see.

The same list, folded the same way, guards the way back: a backend
response's identity and credential headers (a token echoed back, the
roles it acted with) never reach the client, whatever their spelling.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http.hop_by_hop import ALWAYS_HOP_BY_HOP, hop_by_hop_names
from gateway.http.public_links import FORWARDING_HEADERS

# What a Glance v2 client (python-glanceclient, openstacksdk, curl users of
# the API reference) sends end to end: content negotiation, the body's
# description, conditional and ranged requests (image download honours
# Range), the multi-store upload target and the declared size of uploaded
# image data (glanceclient and openstacksdk send it; Glance reads it).
DEFAULT_FORWARDED = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-encoding",
        "content-md5",
        "content-range",
        "content-type",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "range",
        "user-agent",
        "x-image-meta-store",
        "x-openstack-image-size",
    }
)

# Folded prefixes of every header the backend may read as who the caller is
# or what it may do: keystonemiddleware's (X-Identity-Status, X-Project-*,
# X-User-*, X-Domain-*, X-Roles, X-Service-*, the deprecated X-Tenant*/X-Role),
# oslo.context's (OpenStack-System-Scope, X-Storage-Token, X-Service-Catalog,
# X-Is-Admin-Project), and credentials. Never forwardable, whatever the
# configuration says, and never relayed from a backend response.
IDENTITY_PREFIXES = (
    "x-identity-",
    "x-project-",
    "x-user",
    "x-domain-",
    "x-tenant",
    "x-role",
    "x-service-",
    "x-is-admin-project",
    "x-system-scope",
    "x-auth",
    "x-storage-",
    "x-subject-token",
    "x-openstack-request-id",
    "openstack-system-scope",
    "authorization",
)


def fold(name: str) -> str:
    """A header name as a WSGI server that merges ``_`` and ``-`` would see it."""
    return name.lower().replace("_", "-")


def is_identity_like(name: str) -> bool:
    return fold(name).startswith(IDENTITY_PREFIXES)


def relayable(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The backend response's headers that may reach the client: end to end,
    and none that speaks for an identity or carries a credential."""
    dropped = hop_by_hop_names(headers)
    return CIMultiDict(
        [
            (name, value)
            for name, value in headers.items()
            if (lower := name.lower()) not in dropped
            and not lower.replace("_", "-").startswith(IDENTITY_PREFIXES)
        ]
    )


class HeaderBoundary:
    """Filters a request's headers down to the allow-list; counts what it drops."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        extra = frozenset(fold(name) for name in extra)
        refused = sorted(n for n in extra if is_identity_like(n))
        if refused:
            raise ValueError(f"identity headers can never be forwarded: {', '.join(refused)}")
        hop_by_hop = sorted(extra & ALWAYS_HOP_BY_HOP)
        if hop_by_hop:
            raise ValueError(f"hop-by-hop headers are not forwarded: {', '.join(hop_by_hop)}")
        # The path a request took (X-Forwarded-*, Forwarded) and Expect are the
        # gateway's to write to the backend, never the client's to pass on:
        # left off the list here, so no request pays to strip them later.
        self.allowed = (DEFAULT_FORWARDED | extra) - _GATEWAYS_OWN
        # Requests that carried at least one identity-like header; read by metrics.
        self.identity_headers_dropped = 0

    def forwardable(
        self, headers: CIMultiDictProxy[str] | CIMultiDict[str]
    ) -> tuple[CIMultiDict[str], list[str]]:
        """The headers that may go upstream, and the identity-like names dropped
        (sorted, each once; credentials the gateway itself reads excluded)."""
        kept: CIMultiDict[str] = CIMultiDict()
        spoofed: set[str] = set()
        # Hop-by-hop names are never on the list (HeaderBoundary refuses
        # them); those the client names in Connection are dropped too.
        named = hop_by_hop_names(headers)
        allowed = self.allowed
        for name, value in headers.items():
            lower = name.lower()
            folded = lower.replace("_", "-")
            if folded in allowed:
                if lower not in named:
                    kept.add(name, value)
            elif folded.startswith(IDENTITY_PREFIXES) and lower not in _CREDENTIALS:
                # Names only, bounded: the value may be a credential.
                spoofed.add(folded[:_MAX_LOGGED_NAME])
        if spoofed:
            self.identity_headers_dropped += 1
        return kept, sorted(spoofed)


_MAX_LOGGED_NAME = 64
_GATEWAYS_OWN = frozenset(fold(name) for name in (*FORWARDING_HEADERS, "Expect"))

# Sent by every legitimate client and read by the authentication step; not a
# spoofing attempt (their look-alikes, X_Auth_Token say, are).
_CREDENTIALS = frozenset({"x-auth-token", "authorization", "x-service-token"})
