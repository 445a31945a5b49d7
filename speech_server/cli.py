"""``speech-server``: the command that runs the gRPC speech services."""

from __future__ import annotations

import argparse
import asyncio
import sys

from speech_platform.config import Settings, load_settings
from speech_platform.logs import configure_logging
from speech_platform.memory import limit_malloc_arenas
from speech_platform.native_threads import tune_native_threads
from speech_server.server import SpeechServer, serve

_SERVICE_SETS = {"both": ["stt", "tts"], "all": ["stt", "tts", "jobs"]}


def parse_services(value: str) -> list[str]:
    """'stt', 'tts,jobs', 'both' (stt+tts) or 'all' (stt+tts+jobs)."""
    if value in _SERVICE_SETS:
        return _SERVICE_SETS[value]
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(names) - {"stt", "tts", "jobs"})
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown service(s) {unknown}; use stt, tts, jobs, both or all"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-server",
        description="gRPC speech-to-text and text-to-speech server. Every setting can also come "
        "from SPEECH_* environment variables or a YAML file (see README, Configuration).",
    )
    parser.add_argument("--host", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="gRPC port (default 50051; 0 picks a free one)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (default 9464)")
    parser.add_argument(
        "--http-port",
        type=int,
        help="OpenAI-compatible HTTP API port (default 8000; 0 turns it off)",
    )
    parser.add_argument(
        "--services",
        type=parse_services,
        help="stt, tts, jobs (comma-separated), 'both' (stt,tts) or 'all' (default: all)",
    )
    parser.add_argument("--config", help="YAML config file (same keys as the settings)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default), ERROR")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.host is not None:
        settings.server.host = args.host
    if args.port is not None:
        settings.server.port = args.port
    if args.metrics_port is not None:
        settings.server.metrics_port = args.metrics_port
    if args.http_port is not None:
        settings.server.http_port = args.http_port
    if args.services is not None:
        settings.server.services = args.services
    if args.log_level is not None:
        settings.server.log_level = args.log_level
    return settings


def _announce(server: SpeechServer) -> None:
    names = ", ".join(n for s in server.services for n in s.grpc_service_names)
    http = f" (OpenAI-compatible HTTP :{server.http_port})" if server.http_port else ""
    print(
        f"speech-server ready on {server.settings.server.host}:{server.port} "
        f"(metrics :{server.metrics_port}/metrics){http}: {names}",
        file=sys.stderr,
        flush=True,
    )


def serve_main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    configure_logging(settings.server.log_level, settings.server.log_json)
    if settings.server.malloc_arena_max:
        limit_malloc_arenas(settings.server.malloc_arena_max)
    # The process-wide GIL hand-off only here, for the process this command owns: a server
    # started inside another program (tests, an embedding app) leaves that program's as it is.
    tune_native_threads(settings.server)
    print(
        f"speech-server starting on {settings.server.host}:{settings.server.port} "
        f"(services: {', '.join(settings.server.services)}; loading models...)",
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(serve(settings, on_ready=_announce))


if __name__ == "__main__":
    serve_main()
