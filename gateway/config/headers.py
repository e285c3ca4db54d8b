"""The ``headers`` section: client headers forwarded besides the documented defaults."""

from __future__ import annotations

import re

from pydantic import field_validator

from gateway.config._base import _Section
from gateway.http.header_boundary import fold, is_identity_like
from gateway.http.hop_by_hop import ALWAYS_HOP_BY_HOP

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class HeadersConfig(_Section):
    # Extra end-to-end header names a client may send to the backend (an
    # extension the backend reads, say). Identity and credential headers are
    # refused here: the backend would trust them.
    forward: list[str] = []

    @field_validator("forward")
    @classmethod
    def _forwardable(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _TOKEN.match(name):
                raise ValueError(f"{name!r} is not a header name")
            if is_identity_like(name):
                raise ValueError(
                    f"{name!r} is an identity or credential header: only the gateway sets those"
                )
            if fold(name) in ALWAYS_HOP_BY_HOP:
                raise ValueError(f"{name!r} is a hop-by-hop header: it is never forwarded")
        return [fold(name) for name in names]
