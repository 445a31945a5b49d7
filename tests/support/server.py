"""Real servers for tests: in-process (fast, shares the test's event loop) or as a subprocess
(for signals and process-level behaviour). Both bind loopback on free ports."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from prometheus_client.parser import text_string_to_metric_families

from speech_platform.config import ServiceName, Settings, load_settings
from speech_platform.service import SpeechService
from speech_server.server import SpeechServer

ROOT = Path(__file__).resolve().parents[2]


def fetch_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def metric_samples(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def histogram_buckets(text: str, name: str, **labels: str) -> dict[float, float]:
    """Cumulative bucket counts {upper bound: count} of a histogram."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


@dataclass
class RunningServer:
    server: SpeechServer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def metrics_port(self) -> int:
        return self.server.metrics_port

    async def metrics_text(self) -> str:
        return await asyncio.to_thread(fetch_metrics, self.metrics_port)

    def channel(self, **options: int) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address, options=list(options.items()))


def test_settings(services: Sequence[str] = ("stt",), **overrides: object) -> Settings:
    settings = load_settings(**overrides)  # type: ignore[arg-type]
    settings.server.host = "127.0.0.1"
    settings.server.port = 0
    settings.server.metrics_port = 0
    settings.server.http_port = 0  # off; tests of the HTTP API pick a free port
    settings.server.services = [cast(ServiceName, name) for name in services]
    settings.server.drain_grace_s = 5.0
    return settings


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@asynccontextmanager
async def running_server(
    settings: Settings | None = None,
    *,
    services: Sequence[str] = ("stt",),
    extra_services: Sequence[SpeechService] = (),
    ready_timeout_s: float = 600.0,
) -> AsyncIterator[RunningServer]:
    """The real SpeechServer in this process, serving once models are loaded."""
    settings = settings or test_settings(services)
    server = SpeechServer(settings, list(extra_services))
    await server.start()
    try:
        await server.wait_ready(ready_timeout_s)
        yield RunningServer(server)
    finally:
        await server.stop(grace_s=settings.server.drain_grace_s)


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int
    metrics_port: int
    lines: list[str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)


@contextmanager
def server_process(
    args: Sequence[str] = ("--services", "stt"),
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 600.0,
) -> Iterator[ServerProcess]:
    """``speech-server`` as a subprocess; yields once it prints its ready line."""
    command = [
        str(ROOT / ".venv" / "bin" / "speech-server"),
        "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--http-port", "0", *args,
    ]
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    assert process.stderr is not None
    ready = re.compile(r"ready on [\d.]+:(\d+) \(metrics :(\d+)/metrics\)")
    try:
        match = None
        for line in _lines_until(process, ready_timeout_s):
            lines.append(line)
            match = ready.search(line)
            if match:
                break
        if match is None:
            raise RuntimeError("speech-server exited before ready:\n" + "".join(lines[-30:]))
        yield ServerProcess(process, int(match.group(1)), int(match.group(2)), lines)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _lines_until(process: subprocess.Popen[str], timeout_s: float) -> Iterator[str]:
    """stderr lines, bounded by a watchdog that kills a server that never gets ready."""
    watchdog = threading.Timer(timeout_s, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        yield from iter(process.stderr.readline, "")
    finally:
        watchdog.cancel()

