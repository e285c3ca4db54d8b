"""TLS sections: ``upstream.tls`` (and Keystone's, a JWKS endpoint's, the
collector's) for calling a server, ``listen.tls`` for serving.

Every file is loaded while the configuration is validated, so that a wrong
path, a key that does not match its certificate or a bundle that is not PEM
fails at start-up (and in ``check-config``) with its key path.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Self

from pydantic import ValidationInfo, field_validator, model_validator

from gateway.config._base import _resolve, _Section
from gateway.http.tls import ListenerCertificate, TlsVersion, client_context


class ClientTlsConfig(_Section):
    """How the gateway checks a server it calls, and what it presents to it."""

    # A PEM bundle trusted in place of the system's CAs (a private CA).
    ca_file: Path | None = None
    # The gateway's own certificate (mTLS); the key in key_file or in cert_file.
    cert_file: Path | None = None
    key_file: Path | None = None
    # The chain is always verified; off, the name in it is not compared
    # with the URL's host.
    verify_hostname: bool = True

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @model_validator(mode="after")
    def _files_load(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file: the certificate it is the key of")
        self.context()
        return self

    def context(self) -> ssl.SSLContext:
        return client_context(
            self.ca_file, self.cert_file, self.key_file, verify_hostname=self.verify_hostname
        )


class ListenerTlsConfig(_Section):
    """The listener's certificate; SIGHUP loads the files again (a rotated certificate)."""

    cert_file: Path
    # When the key is not in cert_file.
    key_file: Path | None = None
    min_version: TlsVersion = "1.2"

    @field_validator("cert_file", "key_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @model_validator(mode="after")
    def _files_load(self) -> Self:
        self.certificate()
        return self

    def certificate(self) -> ListenerCertificate:
        return ListenerCertificate(self.cert_file, self.key_file, self.min_version)
