"""Runs the HTTP app in the server's process, on the server's event loop.

uvicorn serves the app on a socket bound here; its own signal handling is left out (the
speech server owns SIGTERM and stops this door as part of its drain).

With ``server.tls`` set, the door speaks HTTPS with the gRPC port's certificate and key,
and with a client CA it requires client certificates signed by it (the caller is still
named by its bearer token over HTTP). The files are read when the server starts; unlike
the gRPC port, a rotated certificate takes effect over HTTP at the next restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import ssl
from typing import Any

import uvicorn

from speech_http.app import Hosted, build_app
from speech_platform.config import TlsSettings

#: Seconds an idle kept-alive connection stays open.
KEEP_ALIVE_S = 75


class HttpDoor:
    def __init__(
        self, hosted: Hosted, host: str, port: int, tls: TlsSettings | None = None
    ) -> None:
        self._app = build_app(hosted)
        self._host = host
        self._port = port
        self._tls = tls if tls is not None and tls.enabled else None
        self._server: uvicorn.Server | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        """Binds the port (raises OSError when taken) and starts serving."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # IPPROTO_TCP named explicitly: asyncio turns Nagle off (TCP_NODELAY) only on
        # connections of a socket that says so; left at 0, every response waits ~40 ms for
        # the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as error:
            sock.close()
            raise RuntimeError(
                f"could not bind the HTTP API's port {self._host}:{self._port} ({error}); "
                "choose another with --http-port / server.http_port, or 0 to turn it off"
            ) from error
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            # The server's logging (speech_platform/logs.py) stays as configured.
            log_config=None,
            log_level="warning",
            access_log=False,
            loop="none",
            # Longer than the idle timeout of common load balancers (60 s), so the server
            # never closes a kept-alive connection a balancer is about to reuse.
            timeout_keep_alive=KEEP_ALIVE_S,
            **_tls_options(self._tls),
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server
        # The tick keeps the Date header fresh; signals stay with the speech server.
        self._loop_task = asyncio.create_task(server.main_loop())

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    async def stop(self, grace_s: float) -> None:
        """Stops accepting, lets open requests finish within ``grace_s``, then closes."""
        server, self._server = self._server, None
        if server is None:
            return
        server.config.timeout_graceful_shutdown = max(1, math.ceil(grace_s))
        server.should_exit = True
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await server.shutdown()


def _tls_options(tls: TlsSettings | None) -> dict[str, Any]:
    """uvicorn's TLS settings for the server's certificate (and client CA: mTLS)."""
    if tls is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:
        options |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options
