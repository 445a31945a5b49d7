"""Throwaway certificates for TLS tests: a CA, a server certificate for 127.0.0.1 and
localhost, and a client certificate, made with ``cryptography`` (no openssl command needed).

Everything lives one day and is written into the folder the test gives (a tmp dir).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def redis_server_args(self, tls_port: int, *, auth_clients: bool = False) -> list[str]:
        """redis-server / Sentinel arguments that open ``tls_port`` with these files."""
        return [
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(self.server_cert),
            "--tls-key-file", str(self.server_key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "yes" if auth_clients else "no",
        ]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_certificates(folder: Path) -> Certificates:
    """A CA, and server and client certificates it signed (EC P-256: fast to make)."""
    now = datetime.datetime.now(datetime.UTC)
    lifetime = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("speech-test-ca"))
        .issuer_name(_name("speech-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str, *usages: x509.ObjectIdentifier
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert, key

    # Redis uses one certificate for both ends of replication and Sentinel links, so the
    # server's certificate must also serve as a client's.
    server_cert, server_key = leaf(
        "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    client_cert, client_key = leaf("speech-test-client", ExtendedKeyUsageOID.CLIENT_AUTH)
    return Certificates(
        ca=_write_cert(ca_cert, folder / "ca.crt"),
        server_cert=_write_cert(server_cert, folder / "server.crt"),
        server_key=_write_key(server_key, folder / "server.key"),
        client_cert=_write_cert(client_cert, folder / "client.crt"),
        client_key=_write_key(client_key, folder / "client.key"),
    )
