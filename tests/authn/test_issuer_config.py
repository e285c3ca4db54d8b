"""Trusted issuers in configuration: each bad value named by its key path."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from tests.support.gateway_config import config_data
from tests.support.tokens import HS_SECRET, Keys

HS_KEY = {"kid": "hs", "algorithm": "HS256", "secret": HS_SECRET}
JWKS = {"url": "https://idp.test/jwks.json"}


def with_auth(keys: Keys, auth: dict[str, Any]) -> dict[str, Any]:
    data = config_data("http://127.0.0.1:1", keys)
    data["auth"] = auth
    return data


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({}, "auth: trust at least one issuer"),
        ({"issuers": [{"issuer": "a"}]}, "auth.issuers.0: give keys, a jwks url, or both"),
        ({"jwks": {"url": "ftp://x"}}, "auth.jwks.url: must be an http:// or https:// URL"),
        (
            {"jwks": {**JWKS, "algorithms": ["HS256"]}},
            "auth.jwks.algorithms: HS256 keys are secrets and never come from a JWKS",
        ),
        ({"jwks": {**JWKS, "min_refetch_interval": 0}}, "auth.jwks.min_refetch_interval"),
        (
            {"issuers": [{"issuer": "a", "jwks": JWKS}, {"issuer": "a", "keys": [HS_KEY]}]},
            "auth: issuers: every issuer must be named once",
        ),
        (
            {"issuer": "x", "issuers": [{"issuer": "a", "jwks": JWKS}]},
            "auth: issuer and audience at the top level need keys or jwks there",
        ),
        ({"issuers": [{"jwks": {**JWKS, "surprise": 1}}]}, "auth.issuers.0.jwks.surprise"),
    ],
)
def test_bad_issuer_config_names_the_key_path(
    keys: Keys, auth: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_auth(keys, auth))
    assert message in str(caught.value)


def test_top_level_and_listed_issuers_are_all_trusted(keys: Keys) -> None:
    config = parse_config(
        with_auth(
            keys,
            {
                "issuer": "https://one.test",
                "keys": [HS_KEY],
                "issuers": [
                    {"issuer": "https://two.test", "jwks": JWKS, "claims": {"project": "t.id"}}
                ],
            },
        )
    )
    issuers = config.auth.trusted_issuers
    assert [i.issuer for i in issuers] == ["https://one.test", "https://two.test"]
    assert issuers[1].claims.project == "t.id"
    assert issuers[1].required_claims == ["exp"]
