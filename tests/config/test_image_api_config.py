"""The image API's configuration: routes, links, role mapping; errors name their key path."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.http.routes import DEFAULT_ENABLED_ROUTES
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys


def parse(keys: Keys, **sections: Any) -> Any:
    return parse_config(config_data("http://127.0.0.1:9292", keys, **sections))


@pytest.mark.parametrize(
    ("sections", "error"),
    [
        ({"routes": {"disable": ["delete_images"]}}, r"routes\.disable: .*'delete_images'"),
        ({"listen": {"public_url": "images.example.com"}}, r"listen\.public_url: .*http"),
        (
            {"upstream": {"role_mapping": {"Reader": ["reader"], "reader": ["member"]}}},
            r"upstream\.role_mapping: .*mapped twice",
        ),
        (
            {"upstream": {"role_mapping": {"observer": ["reader,member"]}}},
            r"upstream\.role_mapping: .*comma",
        ),
        (
            {
                "rate_limit": {
                    "rules": [{"name": "r", "routes": ["uploads"], "unit": "hour", "value": 1}]
                }
            },
            r"rate_limit\.rules\.0\.routes: .*'uploads'",
        ),
    ],
    ids=["unknown route", "public url", "role twice", "comma in role", "rate-limit route"],
)
def test_bad_image_api_settings_name_their_key_path(
    keys: Keys, sections: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        parse(keys, **sections)


def test_enabled_routes_are_the_default_set_plus_and_minus(keys: Keys) -> None:
    config = parse(keys, routes={"enable": ["cache_list"], "disable": ["add_task"]})
    assert config.routes.enabled == (DEFAULT_ENABLED_ROUTES | {"cache_list"}) - {"add_task"}
    assert "get_metadef_namespaces" not in DEFAULT_ENABLED_ROUTES
    assert {"get_images", "upload_image", "delete_image"} <= DEFAULT_ENABLED_ROUTES


def test_the_old_route_name_image_delete_still_names_delete_image(keys: Keys) -> None:
    config = parse(
        keys,
        authorization={
            "routes": {"image:delete": {"roles": ["creator"]}},
            "rules": {"image:delete": "role:x"},
        },
    )
    assert set(config.authorization.routes) == {"delete_image"}
    assert config.authorization.rule_texts()["delete_image"] == "role:x"


def test_role_mapping_is_kept_in_lower_case(keys: Keys) -> None:
    config = parse(keys, upstream={"role_mapping": {"cloudImages:Admin": ["Member", "reader"]}})
    assert config.upstream.role_mapping == {"cloudimages:admin": ["member", "reader"]}
