"""Real certificates for the TLS tests, made by trustme: a private CA, server
and client certificates it signs (expired ones too), written as PEM files."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as files; ``serial`` tells which one a peer saw."""

    cert_file: Path
    key_file: Path
    serial: int


class PrivateCa:
    """A CA of the test's own, trusted by nothing until a test says so."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.ca = trustme.CA()
        self.directory = directory
        self.name = name
        self.ca_file = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._issued = 0

    def issue(
        self, *names: str, expired: bool = False, into: Path | None = None, stem: str | None = None
    ) -> Issued:
        """A certificate for ``names`` (a client's, or a server's) and its key,
        written to ``stem``.crt/.key in ``into`` (atomically: a server reading
        them never sees half a file)."""
        self._issued += 1
        now = datetime.datetime.now(datetime.UTC)
        day = datetime.timedelta(days=1)
        if expired:
            leaf = self.ca.issue_cert(*names, not_before=now - 2 * day, not_after=now - day)
        else:
            leaf = self.ca.issue_cert(*names)
        stem = stem or f"{self.name}-leaf-{self._issued}"
        where = into or self.directory
        cert_file, key_file = where / f"{stem}.crt", where / f"{stem}.key"
        for path, pem in ((cert_file, leaf.cert_chain_pems[0]), (key_file, leaf.private_key_pem)):
            partial = path.with_suffix(".partial")
            pem.write_to_path(str(partial))
            partial.replace(path)
        serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
        return Issued(cert_file, key_file, serial)

    def server_context(
        self, server: Issued, *, client_ca: PrivateCa | None = None
    ) -> ssl.SSLContext:
        """A server's context presenting ``server``; with ``client_ca``, one that
        requires a client certificate that CA signed."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(server.cert_file, server.key_file)
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=client_ca.ca_file)
        return context
