"""TLS for the gRPC port, and mTLS when a client CA is configured.

The certificate files are watched, not just read once: gRPC asks ``CertificateFiles.fetch``
for the configuration at each new connection, and a change of any file (a renewed
cert-manager certificate, a rotated Kubernetes Secret, which swaps a symlink) is loaded
then, so connections opened after a rotation see the new certificate without a restart.
Connections already open keep theirs. A rotation caught half-written (a key that does not
match its certificate) keeps the previous configuration until the files settle.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc

from speech_platform.config import TlsSettings

log = logging.getLogger(__name__)


class CertificateFiles:
    """The server's certificate, key and optional client CA, reloaded when they change."""

    def __init__(self, settings: TlsSettings) -> None:
        self._cert = Path(settings.cert_file)
        self._key = Path(settings.key_file)
        self._client_ca = Path(settings.client_ca_file) if settings.client_ca_file else None
        self._stamp = self._current_stamp()
        self.initial = self._configuration()

    @property
    def requires_client_certificates(self) -> bool:
        return self._client_ca is not None

    def _paths(self) -> list[Path]:
        return [self._cert, self._key, *([self._client_ca] if self._client_ca else [])]

    def _current_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths():
            info = os.stat(path)  # follows the Secret's ..data symlink, as a reader does
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self._key.read_bytes(), self._cert.read_bytes())],
            root_certificates=self._client_ca.read_bytes() if self._client_ca else None,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-handshake question: a new configuration, or None for "unchanged"."""
        try:
            stamp = self._current_stamp()
            if stamp == self._stamp:
                return None
            configuration = self._configuration()
        except OSError as error:
            log.warning("tls: certificate files unreadable; keeping the loaded ones",
                        extra={"error": str(error)})
            return None
        self._stamp = stamp
        log.info("tls: certificate files changed; new connections use them")
        return configuration


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port``; client certificates are required (and verified
    against ``client_ca_file``) when a client CA is configured."""
    files = CertificateFiles(settings)
    return grpc.dynamic_ssl_server_credentials(
        files.initial,
        files.fetch,
        require_client_authentication=files.requires_client_certificates,
    )
