"""``speech-worker``: a Celery worker that runs transcription and synthesis jobs.

    REDIS_URL=redis://redis:6379/0 speech-worker --kinds transcription
    speech-worker --kinds synthesis --name synth-1@%h

It loads its engines first and consumes only once they are ready, one job at a time
(solo pool, prefetch 1): run more processes or pods to run more jobs at once. It prints
``speech-worker ready: <name> ...`` on stderr when it starts consuming, and answers Celery's
``ping`` from then on.
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
import socket
import sys
from typing import Any

from celery import signals
from prometheus_client import start_http_server

from speech_jobs.celery_app import make_celery_app, queue_for
from speech_jobs.records import JobKind
from speech_jobs.worker import WorkerRuntime, register_tasks
from speech_platform.config import Settings, load_settings
from speech_platform.logs import configure_logging
from speech_platform.memory import limit_malloc_arenas
from speech_platform.native_threads import limit_blas_threads

_KINDS = {"transcription": JobKind.TRANSCRIPTION, "synthesis": JobKind.SYNTHESIS}


def parse_kinds(value: str) -> list[JobKind]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(names) - set(_KINDS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown job kind(s) {unknown}; use transcription, synthesis or both"
        )
    return [_KINDS[name] for name in dict.fromkeys(names)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-worker",
        description="Runs speech jobs from the Redis broker (settings: SPEECH_JOBS__*, "
        "REDIS_URL, or a YAML file).",
    )
    parser.add_argument(
        "--kinds",
        type=parse_kinds,
        default=list(_KINDS.values()),
        help="job kinds to run, comma-separated: transcription,synthesis (default both); "
        "each kind has its own queue",
    )
    parser.add_argument(
        "--name", help="Celery node name (default speech-worker@<host>); %%h is the host"
    )
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (0 picks a free one)")
    parser.add_argument("--config", help="YAML config file (same keys as the settings)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default), ERROR")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings: Settings = load_settings(args.config)
    if args.log_level:
        settings.server.log_level = args.log_level
    configure_logging(settings.server.log_level, settings.server.log_json)
    if settings.server.malloc_arena_max:
        limit_malloc_arenas(settings.server.malloc_arena_max)
    if settings.server.blas_threads:
        limit_blas_threads(settings.server.blas_threads)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: for a worker that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        app = make_celery_app(settings.jobs)
    except ValueError as error:
        raise SystemExit(f"speech-worker: {error}") from None
    hostname = (args.name or "speech-worker@%h").replace("%h", socket.gethostname())
    kinds: list[JobKind] = args.kinds
    queues = [queue_for(settings.jobs, kind) for kind in kinds]
    print(
        f"speech-worker starting: {hostname}, queues {', '.join(queues)} (loading models...)",
        file=sys.stderr,
        flush=True,
    )
    runtime = WorkerRuntime(settings, kinds, hostname, app)
    try:
        runtime.start()
    except Exception as error:
        runtime.close()
        raise SystemExit(f"speech-worker: could not load the engines: {error!r}") from error
    register_tasks(app, runtime)
    metrics_port = settings.server.metrics_port if args.metrics_port is None else args.metrics_port
    metrics_http, _thread = start_http_server(metrics_port)

    def announce(**_kwargs: Any) -> None:
        print(
            f"speech-worker ready: {hostname} (queues {', '.join(queues)}; "
            f"metrics :{metrics_http.server_port}/metrics)",
            file=sys.stderr,
            flush=True,
        )

    def drain(**_kwargs: Any) -> None:
        runtime.begin_drain()

    signals.worker_ready.connect(announce, weak=False)
    signals.worker_shutting_down.connect(drain, weak=False)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                f"--hostname={hostname}",
                f"--queues={','.join(queues)}",
                f"--loglevel={settings.server.log_level.upper()}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        runtime.close()
        metrics_http.shutdown()


if __name__ == "__main__":
    main()
