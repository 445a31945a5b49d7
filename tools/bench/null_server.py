"""``python -m tools.bench.null_server``: the SpeechServer hosting only the null
engine, configured like ``speech-server`` (--config YAML, SPEECH_* variables; the null engine
takes ``stt.instances`` and ``stt.batcher``).

Two reference modes split the serving path's cost apart: ``--no-batcher`` keeps the
SpeechServer and its interceptor but answers inline; ``--bare`` is a plain grpc.aio server
with the same servicer and nothing else (no interceptor, metrics, reflection or batcher).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from speech_platform.config import Settings, load_settings
from speech_platform.logs import configure_logging
from speech_server.server import SpeechServer
from tools.bench.null_service import NullSpeechService


async def _until_signalled() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()


async def _serve_speech_server(settings: Settings, batched: bool) -> None:
    null = NullSpeechService(settings.stt.batcher, settings.stt.instances, batched=batched)
    server = SpeechServer(settings, extra_services=[null])
    await server.start()
    await server.wait_ready(60)
    await _until_signalled()
    await server.stop(settings.server.drain_grace_s)


async def _serve_bare(settings: Settings) -> None:
    null = NullSpeechService(settings.stt.batcher, settings.stt.instances, batched=False)
    server = grpc.aio.server()
    null.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"{settings.server.host}:{settings.server.port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await _until_signalled()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="null_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--config")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--no-batcher", action="store_true", help="answer inline (measures the batcher's cost)"
    )
    mode.add_argument(
        "--bare", action="store_true", help="plain grpc.aio server (measures the SpeechServer's)"
    )
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    settings.server.host = args.host
    settings.server.port = args.port
    settings.server.metrics_port = args.metrics_port
    settings.server.services = []
    configure_logging(settings.server.log_level, settings.server.log_json)
    if args.bare:
        asyncio.run(_serve_bare(settings))
    else:
        asyncio.run(_serve_speech_server(settings, batched=not args.no_batcher))


if __name__ == "__main__":
    main()
