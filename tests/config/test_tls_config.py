"""gateway.config.tls: certificates, keys and CA bundles load at validation, or
the error names the key path and the file."""

from __future__ import annotations

from pathlib import Path

from gateway.config import parse_config
from tests.config.test_config import assert_names, error_of, minimal
from tests.support.certificates import PrivateCa


def test_client_tls_loads_a_ca_a_certificate_and_its_key_relative_to_the_file(
    tmp_path: Path,
) -> None:
    ca = PrivateCa(tmp_path)
    ours = ca.issue("gateway.example")
    tls = {"ca_file": ca.ca_file.name, "cert_file": ours.cert_file.name,
           "key_file": ours.key_file.name}  # fmt: skip
    config = parse_config(
        minimal(upstream={"url": "https://glance.test", "tls": tls}), base_dir=tmp_path
    )
    assert config.upstream.tls is not None
    assert config.upstream.tls.ca_file == ca.ca_file
    assert config.upstream.tls.context().check_hostname


def test_a_key_that_does_not_match_the_certificate_is_named(tmp_path: Path) -> None:
    ca = PrivateCa(tmp_path)
    first, second = ca.issue("a.example"), ca.issue("b.example")
    tls = {"cert_file": str(first.cert_file), "key_file": str(second.key_file)}
    message = error_of(minimal(upstream={"url": "https://glance.test", "tls": tls}))
    assert_names(message, "upstream.tls")
    assert "key values mismatch" in message


def test_tls_for_a_plain_http_url_is_refused(tmp_path: Path) -> None:
    tls = {"ca_file": str(PrivateCa(tmp_path).ca_file)}
    assert_names(error_of(minimal(upstream={"url": "http://glance.test", "tls": tls})), "upstream")


def test_a_ca_bundle_that_is_not_pem_is_named(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("not a certificate\n")
    tls = {"ca_file": str(bundle)}
    message = error_of(minimal(upstream={"url": "https://glance.test", "tls": tls}))
    assert_names(message, "upstream.tls")
    assert str(bundle) in message


def test_a_listener_certificate_that_is_missing_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone.crt"
    message = error_of(minimal(listen={"tls": {"cert_file": str(missing)}}))
    assert_names(message, "listen.tls")
    assert "No such file" in message


def test_the_listener_serves_tls_1_2_at_least_or_1_3_when_asked(tmp_path: Path) -> None:
    served = PrivateCa(tmp_path).issue("localhost")
    tls = {"cert_file": str(served.cert_file), "key_file": str(served.key_file)}
    config = parse_config(minimal(listen={"tls": tls}))
    assert config.listen.tls is not None
    assert config.listen.tls.certificate().context.minimum_version.name == "TLSv1_2"
    strict = parse_config(minimal(listen={"tls": {**tls, "min_version": "1.3"}}))
    assert strict.listen.tls is not None
    assert strict.listen.tls.certificate().context.minimum_version.name == "TLSv1_3"
    assert_names(error_of(minimal(listen={"tls": {**tls, "min_version": "1.1"}})),
                 "listen.tls.min_version")  # fmt: skip


def test_keystone_takes_its_ca_once(tmp_path: Path) -> None:
    ca = PrivateCa(tmp_path)
    keystone = {
        "auth_url": "https://keystone.test/v3",
        "application_credential": {"id": "a", "secret": "s"},
        "ca_file": str(ca.ca_file),
        "tls": {"ca_file": str(ca.ca_file)},
    }
    assert_names(error_of(minimal(auth={**minimal()["auth"], "keystone": keystone})),
                 "auth.keystone")  # fmt: skip
