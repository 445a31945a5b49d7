"""Real ``speech-worker`` processes for the Celery tests.

Readiness is Celery's own ``ping``: a worker answers only once its engines are loaded and
it consumes (it loads models before it starts the consumer). Every call that blocks is
meant to run in a thread (``asyncio.to_thread``), because the server under test shares
the test's event loop.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from celery import Celery

from tests.support.server import ROOT

WORKER = ROOT / ".venv" / "bin" / "speech-worker"


class WorkerProcess:
    def __init__(
        self, label: str, env: Mapping[str, str], log_dir: Path, kinds: str = "transcription"
    ) -> None:
        self.name = f"{label}-{uuid.uuid4().hex[:6]}@localhost"
        self.kinds = kinds
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(WORKER), "--kinds", self.kinds, "--name", self.name, "--metrics-port", "0"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, app: Celery, timeout_s: float = 300.0) -> None:
        """Blocks until the worker answers a Celery ping (bounded; fails if it exits)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log_tail()}")
            if app.control.ping(destination=[self.name], timeout=1.0):
                return
        raise TimeoutError(f"worker {self.name} not ready in {timeout_s}s:\n{self.log_tail()}")

    @property
    def metrics_port(self) -> int:
        """The port its ready line announced (``--metrics-port 0`` picks a free one)."""
        found = re.search(r"speech-worker ready: .* metrics :(\d+)/metrics", self.log_tail(10**6))
        if found is None:
            raise RuntimeError(f"worker {self.name} announced no metrics port")
        return int(found.group(1))

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is acknowledged or cleaned up."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> None:
        """SIGTERM, as Kubernetes sends it: Celery's warm shutdown."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout_s: float = 120.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.alive:
            self.terminate()
            try:
                self.wait_exit(60)
            except subprocess.TimeoutExpired:
                self.dump_stacks_and_kill()

    def dump_stacks_and_kill(self) -> None:
        """For a worker that does not exit: its threads' stacks go to its log first."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)  # time to write the dump (it does not exit on USR1)
        self.kill()

    def log_tail(self, max_bytes: int = 6000) -> str:
        try:
            return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")
        except OSError:
            return ""


def worker_env(broker_url: str, **extra: str) -> dict[str, str]:
    """Settings of test workers (and of the server that sends them jobs)."""
    env = {
        "SPEECH_JOBS__BACKEND": "celery",
        "SPEECH_JOBS__BROKER_URL": broker_url,
        "SPEECH_CACHE__BACKEND": "redis",
        "SPEECH_CACHE__REDIS_URL": broker_url,
        # Small batches so progress comes in several steps; a short lease so a dead worker's
        # job is taken over within seconds.
        "SPEECH_STT__BATCHER__MAX_BATCH_SIZE": "2",
        "SPEECH_JOBS__LEASE_TTL_S": "6",
        "SPEECH_JOBS__WORKER_DRAIN_S": "0",
        "SPEECH_TTS__ENGINES": '["piper"]',
        "SPEECH_SERVER__LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def owner_host(owner: str) -> str:
    """The Celery node name inside a job record's owner ("<node>/<pid>/<nonce>")."""
    return owner.split("/", 1)[0]


def stop_all(workers: Sequence[WorkerProcess]) -> None:
    """SIGTERM to all first, then wait for each: they shut down in parallel."""
    running = [w for w in workers if w.alive]
    for worker in running:
        worker.terminate()
    for worker in running:
        try:
            worker.wait_exit(60)
        except subprocess.TimeoutExpired:
            worker.dump_stacks_and_kill()
