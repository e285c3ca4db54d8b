"""The auth.keystone section: credentials, secrets from the environment, key paths."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
from tests.config.test_config import assert_names, error_of

PASSWORD = {"username": "image-gateway", "password": "${KS_PASSWORD}", "project_name": "service"}


def keystone_only(**section: Any) -> dict[str, Any]:
    return {
        "upstream": {"url": "http://glance.test:9292"},
        "auth": {"keystone": {"auth_url": "https://keystone.test:5000/v3/", **section}},
    }


def test_keystone_alone_is_a_trusted_issuer_with_secrets_from_the_environment() -> None:
    config = parse_config(keystone_only(password=PASSWORD), env={"KS_PASSWORD": "s3cret"})
    keystone = config.auth.keystone
    assert keystone is not None
    assert keystone.auth_url == "https://keystone.test:5000"
    assert keystone.password is not None
    assert keystone.password.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    assert (keystone.cache_ttl, keystone.interface) == (300.0, "internal")


def test_an_application_credential_serves_instead_of_a_password() -> None:
    section = {"id": "abc123", "secret": "${KS_APP_SECRET}"}
    config = parse_config(keystone_only(application_credential=section), env={"KS_APP_SECRET": "x"})
    assert config.auth.keystone is not None
    assert config.auth.keystone.application_credential is not None


def test_a_missing_secret_names_the_key() -> None:
    assert_names(
        error_of(keystone_only(password=PASSWORD), env={}), "auth.keystone.password.password"
    )


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({}, "auth.keystone", "give exactly one of application_credential and password"),
        (
            {"password": PASSWORD, "application_credential": {"id": "a", "secret": "b"}},
            "auth.keystone",
            "exactly one",
        ),
        ({"password": PASSWORD, "auth_url": "keystone:5000"}, "auth.keystone.auth_url", "http"),
        ({"password": PASSWORD, "interface": "private"}, "auth.keystone.interface", "public"),
        ({"password": PASSWORD, "cache_ttl": 0}, "auth.keystone.cache_ttl", "greater than 0"),
        (
            {
                "password": PASSWORD,
                "shared_cache": {"redis": {"url": "redis://r:6379"}, "secret": "short"},
            },
            "auth.keystone.shared_cache.secret",
            "at least 32 bytes",
        ),
        ({"password": PASSWORD, "ca_file": "/nonexistent/ca.pem"}, "auth.keystone", "not a file"),
    ],
)
def test_bad_keystone_sections_name_their_key(
    section: dict[str, Any], path: str, words: str
) -> None:
    message = error_of(keystone_only(**section), env={"KS_PASSWORD": "p"})
    assert_names(message, path)
    assert words in message
