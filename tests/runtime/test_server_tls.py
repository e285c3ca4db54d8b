"""The listener over TLS: ``python -m gateway run`` with ``listen.tls``, its
certificate rotated under SIGHUP while clients keep connecting.

Each request is a new connection, so a new handshake: the serial number of
the certificate each one saw tells when the rotation took effect, and no
request may fail on the way.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.certificates import PrivateCa
from tests.support.gateway_config import config_data
from tests.support.gateway_process import GatewayProcess
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory
from tests.support.waiting import until


@dataclass
class Seen:
    """What the clients saw: each answer's status and certificate serial, and failures."""

    answers: list[tuple[int, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def serials(self) -> set[int]:
        return {serial for _, serial in self.answers}


async def get_limits(port: int, context: ssl.SSLContext, token: str) -> tuple[int, int]:
    """GET /limits on a new TLS connection: the status and the server certificate's serial."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(
            f"GET /limits HTTP/1.1\r\nHost: localhost\r\nX-Auth-Token: {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        status_line = await reader.readline()
        await reader.read()
    finally:
        writer.close()
    return int(status_line.split()[1]), x509.load_der_x509_certificate(der).serial_number


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_certificate_rotated_under_sighup_is_served_with_no_failed_request(
    keys: Keys, token: TokenFactory, tmp_path: Path, workers: int
) -> None:
    ca = PrivateCa(tmp_path)
    first = ca.issue("localhost", into=tmp_path, stem="listener")
    port, admin_port = free_port(), free_port()
    tls = {"cert_file": str(first.cert_file), "key_file": str(first.key_file)}
    config = config_data(
        "http://127.0.0.1:1",
        keys,
        listen={"host": "127.0.0.1", "port": port, "workers": workers, "tls": tls},
        admin={"port": admin_port},
        logging={"level": "WARNING"},
    )
    parent = await GatewayProcess.run(config, tmp_path).start()
    client = ssl.create_default_context(cafile=ca.ca_file)
    admin_token = token(roles=["admin"])
    seen, stop = Seen(), asyncio.Event()

    async def keep_asking() -> None:
        while not stop.is_set():
            try:
                seen.answers.append(await get_limits(port, client, admin_token))
            except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
                seen.failures.append(repr(exc))

    try:
        assert (await get_limits(port, client, admin_token))[0] == 200
        clients = [asyncio.create_task(keep_asking()) for _ in range(4)]
        await until(lambda: _more_than(seen, 20), "answers with the first certificate")
        second = ca.issue("localhost", into=tmp_path, stem="listener")
        parent.send_signal(signal.SIGHUP)
        before = len(seen.answers)

        async def only_the_second() -> bool:
            # Every worker has reloaded: the last answers all saw the new one.
            latest = seen.answers[before:][-20:]
            return len(latest) == 20 and {serial for _, serial in latest} == {second.serial}

        await until(only_the_second, "the rotated certificate on every new connection")
        stop.set()
        await asyncio.gather(*clients)
    finally:
        stop.set()
        exit_code = await parent.stop()
    assert seen.failures == []
    assert {status for status, _ in seen.answers} == {200}
    assert seen.serials == {first.serial, second.serial}
    assert exit_code == 0


async def _more_than(seen: Seen, count: int) -> bool:
    return len(seen.answers) > count
