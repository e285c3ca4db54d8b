"""TLS both ways: what the gateway trusts and presents when it calls a server,
and the certificate its listener serves, reloaded in place.

Client side (the backend, Keystone, a JWKS endpoint): a CA bundle in place
of the system store, a client certificate for mTLS, hostname verification
on unless turned off. Listener side: a certificate and key, TLS 1.2 at
least; ``ListenerCertificate.reload`` loads the files again into the same
``SSLContext``, and OpenSSL copies a context's certificate into each new
connection, so new handshakes get the new certificate and connections
already open keep theirs.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Literal

log = logging.getLogger("gateway.http.tls")

TlsVersion = Literal["1.2", "1.3"]
_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


class TlsFilesError(ValueError):
    """A certificate, key or CA bundle that does not load; the message names the file."""


def _reason(exc: ssl.SSLError | OSError) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        # "KEY_VALUES_MISMATCH", "NO_START_LINE": OpenSSL's own words, not "PEM lib".
        return str(exc.reason).replace("_", " ").lower()
    return exc.strerror or str(exc)


def _load_chain(context: ssl.SSLContext, cert_file: Path, key_file: Path | None) -> None:
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        files = f"{cert_file}" if key_file is None else f"{cert_file} with key {key_file}"
        raise TlsFilesError(f"certificate {files} does not load: {_reason(exc)}") from None


def client_context(
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    *,
    verify_hostname: bool = True,
) -> ssl.SSLContext:
    """A context for calling a server: its certificate verified against
    ``ca_file`` (the system's CAs when None), ours presented when given."""
    try:
        # A bundle given is trusted in place of the system store, not beside it.
        context = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsFilesError(f"CA bundle {ca_file} does not load: {_reason(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        _load_chain(context, cert_file, key_file)
    # The chain is verified either way; the name in it only when asked.
    context.check_hostname = verify_hostname
    return context


class ListenerCertificate:
    """The listener's server context, its certificate reloaded from the same files."""

    def __init__(
        self, cert_file: Path, key_file: Path | None = None, min_version: TlsVersion = "1.2"
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = _VERSIONS[min_version]
        _load_chain(self.context, cert_file, key_file)

    def reload(self) -> bool:
        """Load the files again; False (logged) when they do not load, and the
        certificate served so far stays."""
        # Loaded into a scratch context first: a failed load_cert_chain may
        # have replaced the certificate but not the key of the live one.
        try:
            _load_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), self.cert_file, self.key_file)
        except TlsFilesError as exc:
            log.error("listener certificate not reloaded, the current one stays: %s", exc)
            return False
        _load_chain(self.context, self.cert_file, self.key_file)
        log.info("listener certificate reloaded from %s", self.cert_file)
        return True
