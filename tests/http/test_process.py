"""``speech-server`` as a process: the HTTP door opens with ``--http-port``, says so in the
ready line, and closes with the server's drain on SIGTERM."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.http.conftest import free_port
from tests.support.server import server_process

pytestmark = pytest.mark.slow


def test_the_cli_serves_http_and_drains_it_on_sigterm():
    port = free_port()
    with server_process(("--services", "stt", "--http-port", str(port))) as server:
        assert f"(OpenAI-compatible HTTP :{port})" in server.lines[-1]
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json() == {
            "status": "ready"
        }
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert {"tiny.en", "whisper-1"} <= {m["id"] for m in models["data"]}
        server.terminate()
        assert server.process.wait(timeout=60) == 0
    with socket.socket() as probe:  # nothing listens there any more
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
