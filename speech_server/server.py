"""The gRPC server that hosts the speech services.

Lifecycle, as an orchestrator sees it:

1. ``start()``: the port opens at once, with grpc.health.v1 answering NOT_SERVING for
   every service while models load; each service turns SERVING when its ``start()``
   returns, and the overall status ("") when all have.
2. ``stop(grace)`` (SIGTERM): health goes NOT_SERVING first, new RPCs are refused, in-flight
   RPCs get ``grace`` seconds to finish, then services free their models.

Reflection (v1 and v1alpha: grpcurl 1.8 speaks v1alpha) and Prometheus /metrics come with it,
and, on ``server.http_port``, the OpenAI-compatible HTTP API (speech_http) over the same
service objects, on this same event loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from prometheus_client import start_http_server

from speech_platform.budget import MIB, MemoryBudget
from speech_platform.cache.factory import build_cache
from speech_platform.collector import tune_collector
from speech_platform.config import Settings
from speech_platform.interceptors import ServerInterceptor
from speech_platform.memory import IdleTrim
from speech_platform.native_threads import limit_blas_threads
from speech_platform.principals import Authenticator
from speech_platform.service import ServiceContext, SpeechService
from speech_server.registry import SERVICES
from speech_server.tls import server_credentials

log = logging.getLogger(__name__)

_REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


class SpeechServer:
    """Hosts the configured speech services on one gRPC port."""

    def __init__(
        self, settings: Settings, extra_services: list[SpeechService] | None = None
    ) -> None:
        self.settings = settings
        self.context = ServiceContext(
            settings=settings,
            memory=MemoryBudget(settings.server.memory_budget_mb * MIB),
        )
        self.services: list[SpeechService] = []
        self._extra = list(extra_services or [])
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self.health_port = 0
        self._metrics_http: Any = None
        self._http_door: Any = None
        self.port = 0
        self.metrics_port = 0
        #: The HTTP API's port (0 while it is off).
        self.http_port = 0
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._start_task: asyncio.Task[None] | None = None
        self.idle_trim: IdleTrim | None = None
        self._trim_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Opens the port and begins loading models in the background."""
        cfg = self.settings.server
        if cfg.blas_threads:
            limit_blas_threads(cfg.blas_threads)
        self.context.cache = build_cache(self.settings.cache)
        for service_name in cfg.services:
            service = SERVICES[service_name](self.context)
            self.services.append(service)
            self.context.services[service_name] = service
        self.services.extend(self._extra)

        authenticator = Authenticator.for_server(self.settings)
        self.interceptor = ServerInterceptor(authenticator, self.settings.auth.open_methods)
        server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=_channel_options(self.settings),
            maximum_concurrent_rpcs=None,
        )
        for service in self.services:
            service.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [n for s in self.services for n in s.grpc_service_names]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME, _REFLECTION_V1],
            server,
        )
        server.add_generic_rpc_handlers((_reflection_v1_alias(server, names),))
        address = f"{cfg.host}:{cfg.port}"
        if cfg.tls.enabled:
            self.port = server.add_secure_port(address, server_credentials(cfg.tls))
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"could not bind {cfg.host}:{cfg.port}")
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        self._server = server
        if cfg.health_port >= 0:
            await self._start_health_port(f"{cfg.host}:{cfg.health_port}")
        if cfg.metrics_port >= 0 and self._metrics_http is None:
            httpd, _thread = start_http_server(cfg.metrics_port, addr=cfg.host)
            self._metrics_http = httpd
            self.metrics_port = httpd.server_port
        if cfg.http_port:
            await self._start_http(authenticator)
        log.info(
            "listening",
            extra={
                "port": self.port,
                "metrics_port": self.metrics_port,
                "http_port": self.http_port,
                "services": names,
            },
        )
        self._start_task = asyncio.create_task(self._start_services())
        if cfg.trim_idle_memory_s > 0:
            budget, interceptor = self.context.memory, self.interceptor
            # Work that leaves memory behind: reservations, and large messages (refused
            # ones too: a 30 MiB upload refused for its length reserves nothing).
            self.idle_trim = IdleTrim(
                lambda: budget.reservations + interceptor.large_messages,
                lambda: budget.in_use > 0,
                cfg.trim_idle_memory_s,
            )
            self._trim_task = asyncio.create_task(self.idle_trim.run())

    async def _start_health_port(self, address: str) -> None:
        """Plaintext grpc.health.v1 for probes that cannot speak TLS (see health_port)."""
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, health_server)
        self.health_port = health_server.add_insecure_port(address)
        if self.health_port == 0:
            raise RuntimeError(f"could not bind the health port {address}")
        await health_server.start()
        self._health_server = health_server

    async def _start_http(self, authenticator: Authenticator) -> None:
        """The OpenAI-compatible door, over the very service objects gRPC serves."""
        from speech_http.app import Hosted  # only servers with the HTTP API load it
        from speech_http.door import HttpDoor

        cfg = self.settings.server
        services = self.context.services
        hosted = Hosted(
            stt=services.get("stt"),  # type: ignore[arg-type]
            tts=services.get("tts"),  # type: ignore[arg-type]
            authenticator=authenticator,
            max_upload_bytes=int(cfg.http_max_upload_mb * 2**20),
            ready=self._ready.is_set,
        )
        door = HttpDoor(hosted, cfg.host, cfg.http_port, cfg.tls)
        await door.start()
        self._http_door = door
        self.http_port = door.port

    async def _start_services(self) -> None:
        started = time.perf_counter()

        async def start_one(service: SpeechService) -> None:
            await service.start()
            for name in service.grpc_service_names:
                await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

        try:
            await asyncio.gather(*(start_one(s) for s in self.services))
        except Exception:
            log.exception("a service failed to start; staying NOT_SERVING")
            raise
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._ready.set()
        log.info("serving", extra={"load_seconds": round(time.perf_counter() - started, 2)})

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Returns once every service is SERVING; raises if a service failed to start."""
        assert self._start_task is not None, "start() first"
        await asyncio.wait_for(asyncio.shield(self._start_task), timeout_s)

    # ------------------------------------------------------------------ stop

    async def stop(self, grace_s: float | None = None) -> None:
        """Drains: NOT_SERVING, refuse new RPCs, finish in-flight ones within grace."""
        if self._stopped.is_set():
            return
        grace = self.settings.server.drain_grace_s if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
        if self._trim_task is not None:
            self._trim_task.cancel()
        draining = []
        if self._server is not None:
            draining.append(self._server.stop(grace))
        if self._http_door is not None:
            draining.append(self._http_door.stop(grace))
        await asyncio.gather(*draining)
        if self._health_server is not None:
            await self._health_server.stop(0)
        await asyncio.gather(
            *(s.stop(grace) for s in self.services), return_exceptions=True
        )
        if self.context.cache is not None:
            await self.context.cache.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
            self._metrics_http = None
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _channel_options(settings: Settings) -> list[tuple[str, Any]]:
    cfg = settings.server
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", cfg.max_receive_message_bytes),
        ("grpc.max_send_message_length", cfg.max_send_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if cfg.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", int(cfg.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(cfg.max_connection_age_grace_s * 1000)),
        ]
    return options


def _reflection_v1_alias(server: grpc.aio.Server, names: list[str]) -> grpc.GenericRpcHandler:
    """Serves grpc.reflection.v1 with the v1alpha implementation.

    The two protocols differ only in their package name (the messages are field-for-field
    the same), so the v1alpha messages decode v1 traffic exactly.
    """
    servicer = reflection.aio.ReflectionServicer(
        [*names, reflection.SERVICE_NAME, _REFLECTION_V1]
    )
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(_REFLECTION_V1, {"ServerReflectionInfo": handler})


async def serve(settings: Settings, on_ready: Callable[[SpeechServer], None] | None = None) -> None:
    """Runs until SIGTERM or SIGINT, then drains; exits non-zero if a service cannot start."""
    server = SpeechServer(settings)
    await server.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    ready = asyncio.ensure_future(server.wait_ready())
    stop_requested = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({ready, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
    if ready.done() and ready.exception() is not None:
        await server.stop(0)
        raise SystemExit(f"speech-server: a service failed to start: {ready.exception()!r}")
    if ready.done():
        # The process is the server's (this is the command's runner): start-up's heap is
        # built, so the collector can be set for serving (speech_platform/collector.py).
        tune_collector(settings.server)
        if on_ready is not None:
            on_ready(server)
    await stop_requested
    ready.cancel()
    log.info("draining", extra={"grace_s": settings.server.drain_grace_s})
    await server.stop()
