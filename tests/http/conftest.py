"""A real speech server with its HTTP door on a free loopback port, and clients for it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from speech_platform.config import Settings
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

TOKEN = "sk-test-token"


def free_port() -> int:
    """A loopback port nothing listens on (http_port 0 means "off", not "any")."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_settings(services: Sequence[str]) -> Settings:
    settings = server_settings(services)
    settings.server.http_port = free_port()
    settings.server.auth_tokens = [TOKEN]
    return settings


@asynccontextmanager
async def http_server(settings: Settings) -> AsyncIterator[tuple[RunningServer, str]]:
    """The server and its HTTP base URL (``http://127.0.0.1:PORT``)."""
    async with running_server(settings) as server:
        assert server.server.http_port == settings.server.http_port
        yield server, f"http://127.0.0.1:{server.server.http_port}"
