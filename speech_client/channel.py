"""Where the server is and how to reach it: target, bearer token, TLS (or mutual TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

#: Synthesized audio of a long text can pass gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ConnectOptions:
    target: str = "localhost:50051"
    #: Sent as "authorization: Bearer <token>" on every call; empty sends none.
    token: str = ""
    #: PEM roots that sign the server certificate; TLS is on when given (or when ``tls``).
    ca: Path | None = None
    #: Client certificate and key (PEM) for mutual TLS: both or neither.
    cert: Path | None = None
    key: Path | None = None
    #: TLS with the system's roots (no ``ca``).
    tls: bool = False

    @property
    def secure(self) -> bool:
        return self.tls or self.ca is not None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def open_channel(self) -> grpc.Channel:
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if not self.secure:
            if self.cert or self.key:
                raise ValueError("a client certificate (--cert/--key) needs TLS: give --ca")
            return grpc.insecure_channel(self.target, options=options)
        return grpc.secure_channel(self.target, self.credentials(), options=options)

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("mutual TLS needs both a certificate (--cert) and its key (--key)")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )
