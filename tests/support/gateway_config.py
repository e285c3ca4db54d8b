"""A valid gateway configuration to start from, and writing one where ``run`` reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.tokens import AUDIENCE, HS_SECRET, ISSUER, Keys


def config_data(upstream_url: str, keys: Keys, **sections: Any) -> dict[str, Any]:
    """The configuration in front of ``upstream_url``, trusting the test keys.

    Each keyword is a section whose keys replace those of the same section here.
    """
    data: dict[str, Any] = {
        "upstream": {"url": upstream_url, "connect_timeout": 1, "read_timeout": 2},
        "auth": {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "keys": [
                {"kid": "hs", "algorithm": "HS256", "secret": HS_SECRET},
                {"kid": "rsa", "algorithm": "RS256", "public_key": keys.rsa_public_pem},
                {"kid": "ec", "algorithm": "ES256", "public_key": keys.ec_public_pem},
            ],
        },
        "authorization": {
            "admin_roles": ["admin"],
            "routes": {"delete_image": {"roles": ["cloudImages:admin"]}},
        },
        "rate_limit": {
            "rules": [
                {
                    "name": "deletes",
                    "path": "^/(v2/)?images/",
                    "methods": ["DELETE"],
                    "unit": "minute",
                    "value": 1000,
                }
            ]
        },
    }
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def read_config(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data
