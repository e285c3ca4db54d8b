"""rediss://: the limiter over TLS to a redis-server with a certificate from a test CA."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.ratelimit.conftest import COUNTED_KEY, two_deletes_at_one_per_minute
from tests.support.gateway_app import GatewayFactory
from tests.support.ports import free_port
from tests.support.redis_servers import STARTUP_DEADLINE, RedisProcess
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import block_until


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pki(directory: Path) -> None:
    """ca.pem, and server.pem/server.key for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test ca"))
        .issuer_name(_name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    _write_pki(tmp_path)
    port = free_port()
    server = RedisProcess(
        free_port(),
        tmp_path,
        (
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(tmp_path / "server.pem"),
            "--tls-key-file",
            str(tmp_path / "server.key"),
            "--tls-ca-cert-file",
            str(tmp_path / "ca.pem"),
            "--tls-auth-clients",
            "no",
        ),
    )
    server.start()
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}"

    def answers_tls() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    block_until(answers_tls, "redis over TLS", STARTUP_DEADLINE)
    yield url
    server.stop()


async def test_limits_over_tls(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    tls_redis_url: str,
    token: TokenFactory,
) -> None:
    statuses = await two_deletes_at_one_per_minute(make_gateway, scripted[1], tls_redis_url, token)
    assert statuses == (204, 413)
    assert redis.Redis.from_url(tls_redis_url).zcard(COUNTED_KEY) == 1
