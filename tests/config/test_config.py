"""gateway.config: every bad value is a ConfigError that names its key path."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.config import ConfigError, GatewayConfig, load_config, parse_config
from gateway.cpu_quota import cgroup_cpu_limit
from tests.support import REPO
from tests.support.gateway_config import config_data
from tests.support.tokens import HS_SECRET, Keys

DEMO_YAML = REPO / "gateway" / "cli" / "demo.yaml"
GATEWAY_YAML = REPO / "config" / "gateway.yaml"

BASE: dict[str, Any] = {
    "upstream": {"url": "http://glance.test:9292"},
    "auth": {"keys": [{"kid": "hs", "algorithm": "HS256", "secret": HS_SECRET}]},
}


def minimal(**sections: Any) -> dict[str, Any]:
    """A valid configuration with ``sections`` merged into its top level."""
    data = copy.deepcopy(BASE)
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return data


def error_of(data: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return str(info.value)


def assert_names(message: str, path: str) -> None:
    """Some line of the error is ``<path>: <what is wrong>``."""
    lines = message.splitlines()
    assert any(line.startswith(f"{path}: ") for line in lines), message


# --- the shipped configurations -------------------------------------------------------------


def test_shipped_demo_config_loads() -> None:
    config = load_config(DEMO_YAML, env={})
    assert isinstance(config, GatewayConfig)
    assert config.upstream.url == "http://127.0.0.1:9292"
    assert [k.kid for k in config.auth.keys] == ["demo"]
    assert config.auth.dev_signing_key is not None
    assert config.rate_limit.store == "memory"
    assert [r.name for r in config.rate_limit.rules] == ["image-deletes"]
    assert config.rate_limit.rules[0].period_seconds == 60
    assert set(config.authorization.routes) == {"delete_image"}


def test_shipped_demo_config_takes_its_secret_from_the_environment() -> None:
    secret = "s" * 40
    config = load_config(DEMO_YAML, env={"IMAGE_GATEWAY_DEMO_SECRET": secret})
    assert config.auth.keys[0].key() == secret.encode()


def test_shipped_gateway_config_loads() -> None:
    config = load_config(GATEWAY_YAML, env={})
    assert config.upstream.url == "http://127.0.0.1:9292"
    assert config.rate_limit.store == "redis"
    assert config.rate_limit.redis is not None
    assert config.rate_limit.redis.url == "redis://127.0.0.1:6379/0"
    (issuer,) = config.auth.trusted_issuers
    assert "exp" in issuer.required_claims
    assert issuer.jwks is not None
    assert config.auth.dev_signing_key is None  # never a dev key in production
    key = issuer.keys[0]
    # keys/... is found beside the file, not in the working directory
    assert key.public_key_file == REPO / "config" / "keys" / "identity-2026.pem"
    assert isinstance(key.key(), rsa.RSAPublicKey)


def test_shipped_gateway_config_loads_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(GATEWAY_YAML.parent)
    config = load_config("gateway.yaml", env={})
    assert isinstance(config.auth.issuers[0].keys[0].key(), rsa.RSAPublicKey)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("gateway.yaml", env={})


def test_shipped_gateway_config_takes_urls_from_the_environment() -> None:
    env = {
        "IMAGE_BACKEND_URL": "https://glance.internal:9292",
        "IMAGE_GATEWAY_REDIS_URL": "rediss://redis.internal:6380/2",
    }
    config = load_config(GATEWAY_YAML, env=env)
    assert config.upstream.url == "https://glance.internal:9292"
    assert config.rate_limit.redis is not None
    assert config.rate_limit.redis.url == "rediss://redis.internal:6380/2"


def test_minimal_config_is_valid() -> None:
    config = parse_config(minimal(), env={})
    assert config.upstream.url == "http://glance.test:9292"
    assert config.rate_limit.store == "memory"


# --- errors name the key path ---------------------------------------------------------------


def test_unknown_key_is_an_error_naming_it() -> None:
    data = minimal()
    data["upstream"] = {"urll": "http://glance.test"}
    message = error_of(data, env={})
    assert_names(message, "upstream.urll")
    assert_names(message, "upstream.url")  # and the key it was meant to be is missing


def test_unknown_top_level_section_is_an_error() -> None:
    message = error_of({**minimal(), "ratelimit": {}}, env={})
    assert_names(message, "ratelimit")


def test_short_hs256_secret_is_refused() -> None:
    data = minimal(auth={"keys": [{"kid": "hs", "algorithm": "HS256", "secret": "x" * 31}]})
    message = error_of(data, env={})
    assert message.startswith("auth.keys.0")
    assert "32 bytes" in message


def test_hs256_secret_of_exactly_32_bytes_is_accepted() -> None:
    data = minimal(auth={"keys": [{"kid": "hs", "algorithm": "HS256", "secret": "x" * 32}]})
    assert parse_config(data, env={}).auth.keys[0].key() == b"x" * 32


def test_hs256_with_a_public_key_is_refused(keys: Keys) -> None:
    key = {"algorithm": "HS256", "secret": HS_SECRET, "public_key": keys.rsa_public_pem}
    message = error_of(minimal(auth={"keys": [key]}), env={})
    assert message.startswith("auth.keys.0")


def test_rs256_with_a_non_pem_public_key_is_refused() -> None:
    key = {"kid": "rsa", "algorithm": "RS256", "public_key": "not a pem at all"}
    message = error_of(minimal(auth={"keys": [key]}), env={})
    assert message.startswith("auth.keys.0")
    assert "PEM" in message


def test_rs256_with_a_secret_is_refused() -> None:
    key = {"kid": "rsa", "algorithm": "RS256", "secret": HS_SECRET}
    message = error_of(minimal(auth={"keys": [key]}), env={})
    assert message.startswith("auth.keys.0")


def test_rs256_with_an_ec_public_key_is_a_type_mismatch(keys: Keys) -> None:
    key = {"kid": "rsa", "algorithm": "RS256", "public_key": keys.ec_public_pem}
    message = error_of(minimal(auth={"keys": [key]}), env={})
    assert message.startswith("auth.keys.0")
    assert "RS256" in message


def test_es256_with_an_rsa_public_key_is_a_type_mismatch(keys: Keys) -> None:
    key = {"kid": "ec", "algorithm": "ES256", "public_key": keys.rsa_public_pem}
    message = error_of(minimal(auth={"keys": [key]}), env={})
    assert message.startswith("auth.keys.0")
    assert "ES256" in message


def test_matching_public_keys_are_loaded(keys: Keys) -> None:
    data = minimal(
        auth={
            "keys": [
                {"kid": "rsa", "algorithm": "RS256", "public_key": keys.rsa_public_pem},
                {"kid": "ec", "algorithm": "ES256", "public_key": keys.ec_public_pem},
            ]
        }
    )
    config = parse_config(data, env={})
    assert isinstance(config.auth.keys[0].key(), rsa.RSAPublicKey)
    assert isinstance(config.auth.keys[1].key(), ec.EllipticCurvePublicKey)


def test_error_in_second_key_names_index_one(keys: Keys) -> None:
    data = minimal(
        auth={
            "keys": [
                {"kid": "hs", "algorithm": "HS256", "secret": HS_SECRET},
                {"kid": "rsa", "algorithm": "RS256", "public_key": keys.ec_public_pem},
            ]
        }
    )
    assert error_of(data, env={}).startswith("auth.keys.1")


def test_bad_regex_in_rule_path() -> None:
    rule = {"name": "r", "path": "^/images/(", "unit": "minute", "value": 1}
    message = error_of(minimal(rate_limit={"rules": [rule]}), env={})
    assert_names(message, "rate_limit.rules.0.path")
    assert "regular expression" in message


def test_redis_store_without_redis_section() -> None:
    message = error_of(minimal(rate_limit={"store": "redis"}), env={})
    assert_names(message, "rate_limit")
    assert "redis" in message


def test_redis_store_with_redis_section_is_valid() -> None:
    section = {"store": "redis", "redis": {"url": "redis://127.0.0.1:6379/0"}}
    config = parse_config(minimal(rate_limit=section), env={})
    assert config.rate_limit.redis is not None
    assert config.rate_limit.redis.url == "redis://127.0.0.1:6379/0"


def test_redis_url_scheme_is_checked() -> None:
    section = {"store": "redis", "redis": {"url": "http://127.0.0.1:6379"}}
    assert_names(error_of(minimal(rate_limit=section), env={}), "rate_limit.redis.url")


def test_duplicate_rule_names() -> None:
    rule = {"name": "deletes", "unit": "minute", "value": 1}
    message = error_of(minimal(rate_limit={"rules": [rule, dict(rule)]}), env={})
    assert_names(message, "rate_limit")
    assert "unique" in message


def test_duplicate_kids() -> None:
    key = {"kid": "same", "algorithm": "HS256", "secret": HS_SECRET}
    message = error_of(minimal(auth={"keys": [key, dict(key)]}), env={})
    assert_names(message, "auth")
    assert "kid" in message


def test_keys_without_kid_are_not_duplicates() -> None:
    key = {"algorithm": "HS256", "secret": HS_SECRET}
    config = parse_config(minimal(auth={"keys": [key, dict(key)]}), env={})
    assert len(config.auth.keys) == 2


def test_unknown_route_name_in_authorization() -> None:
    routes = {"image:nuke": {"roles": ["admin"]}}
    message = error_of(minimal(authorization={"routes": routes}), env={})
    assert_names(message, "authorization.routes")
    assert "image:nuke" in message


def test_no_keys_is_an_error() -> None:
    message = error_of(minimal(auth={"keys": []}), env={})
    assert_names(message, "auth")
    assert "trust at least one issuer" in message


# --- ${VAR} interpolation ----------------------------------------------------------------


def test_env_interpolation_from_the_given_mapping() -> None:
    data = minimal(
        upstream={"url": "http://${GLANCE_HOST}:${GLANCE_PORT}"},
        auth={"keys": [{"kid": "hs", "algorithm": "HS256", "secret": "${SECRET}"}]},
    )
    env = {"GLANCE_HOST": "glance.internal", "GLANCE_PORT": "9292", "SECRET": "k" * 40}
    config = parse_config(data, env=env)
    assert config.upstream.url == "http://glance.internal:9292"
    assert config.auth.keys[0].key() == b"k" * 40


def test_env_interpolation_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IGW_TEST_UPSTREAM", "http://from-environ.test")
    config = parse_config(minimal(upstream={"url": "${IGW_TEST_UPSTREAM}"}))
    assert config.upstream.url == "http://from-environ.test"


def test_env_default_is_used_when_unset() -> None:
    config = parse_config(minimal(upstream={"url": "${NOPE:-http://default.test}"}), env={})
    assert config.upstream.url == "http://default.test"


def test_env_value_wins_over_default() -> None:
    data = minimal(upstream={"url": "${UP:-http://default.test}"})
    assert parse_config(data, env={"UP": "http://set.test"}).upstream.url == "http://set.test"


def test_env_interpolation_of_a_non_string_field() -> None:
    data = minimal(listen={"port": "${PORT:-8181}"})
    assert parse_config(data, env={}).listen.port == 8181
    assert parse_config(data, env={"PORT": "9000"}).listen.port == 9000


def test_unset_env_var_names_the_key_path() -> None:
    data = minimal(auth={"keys": [{"kid": "hs", "algorithm": "HS256", "secret": "${MISSING}"}]})
    message = error_of(data, env={})
    assert_names(message, "auth.keys.0.secret")
    assert "MISSING" in message


def test_unset_env_var_in_top_level_section_names_the_key_path() -> None:
    message = error_of(minimal(upstream={"url": "${MISSING_URL}"}), env={})
    assert_names(message, "upstream.url")
    assert "MISSING_URL" in message


# --- files ---------------------------------------------------------------------------------


def test_public_key_file_is_relative_to_the_config_file(tmp_path: Path, keys: Keys) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "idp.pem").write_text(keys.rsa_public_pem)
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(
        "upstream:\n"
        "  url: http://glance.test\n"
        "auth:\n"
        "  keys:\n"
        "    - kid: idp\n"
        "      algorithm: RS256\n"
        "      public_key_file: keys/idp.pem\n"
    )
    config = load_config(config_file, env={})
    key = config.auth.keys[0]
    assert key.public_key_file == tmp_path / "keys" / "idp.pem"
    assert isinstance(key.key(), rsa.RSAPublicKey)


def test_missing_public_key_file_names_the_key(tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(
        "upstream: {url: 'http://glance.test'}\n"
        "auth:\n"
        "  keys: [{algorithm: RS256, public_key_file: nowhere.pem}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env={})
    assert str(info.value).startswith("auth.keys.0")
    assert "nowhere.pem" in str(info.value)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    config_file = tmp_path / "broken.yaml"
    config_file.write_text("upstream:\n  url: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env={})
    assert str(config_file) in str(info.value)
    assert "YAML" in str(info.value)


def test_non_utf8_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    config_file = tmp_path / "latin1.yaml"
    config_file.write_bytes(b"upstream: {url: 'http://glance.test/caf\xe9'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env={})
    assert str(config_file) in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env={})


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_non_mapping_top_level(tmp_path: Path, text: str) -> None:
    config_file = tmp_path / "list.yaml"
    config_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env={})
    assert str(info.value).startswith("(top level)")


def test_non_mapping_top_level_in_parse_config() -> None:
    assert error_of(["upstream"], env={}).startswith("(top level)")


# --- required claims -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ["exp"]),
        ([], ["exp"]),
        (["iat"], ["exp", "iat"]),
        (["iat", "exp"], ["iat", "exp"]),
    ],
)
def test_required_claims_always_contain_exp(given: list[str] | None, expected: list[str]) -> None:
    auth = {} if given is None else {"required_claims": given}
    config = parse_config(minimal(auth=auth), env={})
    assert config.auth.required_claims == expected


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("upstream:\n  url: http://a\nupstream:\n  url: http://b\n")
    with pytest.raises(ConfigError, match="'upstream' is given twice"):
        load_config(path)


@pytest.mark.parametrize(
    ("dev_key", "message"),
    [
        ({"algorithm": "RS256", "secret": HS_SECRET}, "RS256 takes a private key, not a secret"),
        (
            {"algorithm": "HS256", "secret": HS_SECRET, "private_key": "-----BEGIN"},
            "HS256 takes a secret, not a private key",
        ),
    ],
)
def test_dev_signing_key_refuses_material_of_the_other_kind(
    keys: Keys, dev_key: dict[str, Any], message: str
) -> None:
    data = config_data("http://127.0.0.1:1", keys)
    data["auth"]["dev_signing_key"] = dev_key
    with pytest.raises(ConfigError, match=f"auth.dev_signing_key: {message}"):
        parse_config(data)


@pytest.mark.parametrize(
    ("sections", "path", "message"),
    [
        ({"revocation": {"failure_mode": "ajar"}}, "revocation.failure_mode", "'open' or 'closed'"),
        ({"admin": {"readiness": {"required": ["upstream"]}}}, "admin.readiness.required.0",
         "'redis', 'revocation' or 'keystone'"),
        ({"admin": {"readiness": {"required": ["redis"]}}}, "(top level)",
         "admin.readiness.required: there is no redis check to require"
         " (rate_limit.store is memory)"),
        ({"admin": {"readiness": {"required": ["revocation"]}}}, "(top level)",
         "admin.readiness.required: there is no revocation check to require"
         " (revocation.store is memory)"),
        ({"admin": {"readiness": {"required": ["keystone"]}}}, "(top level)",
         "admin.readiness.required: there is no keystone check to require"
         " (auth.keystone is not set)"),
    ],
)  # fmt: skip
def test_readiness_options_are_checked(
    keys: Keys, sections: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_data("http://127.0.0.1:9292", keys, **sections))
    assert_names(str(caught.value), path)
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [0, -1, "many"])
def test_unfinished_heads_per_client_is_a_positive_count(keys: Keys, value: Any) -> None:
    data = config_data(
        "http://127.0.0.1:9292", keys, listen={"max_unfinished_heads_per_client": value}
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert_names(str(caught.value), "listen.max_unfinished_heads_per_client")


def test_workers_auto_is_one_per_available_cpu(keys: Keys) -> None:
    data = config_data("http://127.0.0.1:9292", keys, listen={"workers": "auto"})
    cores, quota = len(os.sched_getaffinity(0)), cgroup_cpu_limit()
    assert parse_config(data).listen.workers == min(cores, quota or cores)
    with pytest.raises(ConfigError) as caught:
        parse_config({**data, "listen": {"workers": "most"}})
    assert_names(str(caught.value), "listen.workers")
