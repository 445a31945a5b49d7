"""Server subprocesses for the bench: started on free loopback ports, awaited until they serve,
measured (peak RSS from /proc), and stopped within a bounded time."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: Environment that would silently change a server's settings under the bench's feet.
_SCRUBBED_ENV_PREFIXES = ("SPEECH_",)
_SCRUBBED_ENV = ("REDIS_URL",)
_PROBE_INTERVAL_S = 0.2


def free_port() -> int:
    """A port the kernel just handed out on loopback (free for the next few moments)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_ENV_PREFIXES) and key not in _SCRUBBED_ENV
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def speech_server_command() -> list[str]:
    """The installed ``speech-server`` next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("speech-server")
    if script.exists():
        return [str(script)]
    found = shutil.which("speech-server")
    return [found] if found else python_module("speech_server.cli")


def read_kib(pid: int, field: str) -> int | None:
    """A ``Vm*`` field of /proc/<pid>/status in KiB (None when the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # after the command name: state is field 3, utime 14 and stime 15 (1-based)
    return int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_tree(pid: int, limit: int = 512) -> list[int]:
    """pid and its descendants (bounded), for servers made of several processes (Ray)."""
    tree, frontier = [pid], [pid]
    while frontier and len(tree) < limit:
        children = _children(frontier.pop())
        tree += children
        frontier += children
    return tree[:limit]


class ServerProcess:
    """One server subprocess; a context manager that always stops it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        port: int,
        metrics_port: int | None = None,
        ready_line: str | None = None,
        env: dict[str, str] | None = None,
        whole_tree: bool = False,
    ) -> None:
        """``whole_tree``: the server is several processes (Ray); CPU and memory are summed
        over the process and its descendants."""
        self.name = name
        self.whole_tree = whole_tree
        self.argv = list(argv)
        self.port = port
        self.metrics_port = metrics_port
        self.address = f"{LOOPBACK}:{port}"
        self.log_path = log_dir / f"{name}.log"
        self._ready_line = ready_line
        self._env = env or server_env()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.start_seconds = 0.0
        self.peak_rss_mb: float | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, timeout_s: float = 300.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        started = time.perf_counter()
        if self._ready_line is None:
            self._process = subprocess.Popen(
                self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self._env,
                stdin=subprocess.DEVNULL,
            )
            self._await_health(timeout_s)
        else:
            self._process = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=self._log, env=self._env,
                stdin=subprocess.PIPE,
            )
            threading.Thread(target=self._copy_stdout, daemon=True).start()
            try:
                self.wait_line(self._ready_line, timeout_s)
            except RuntimeError:
                self.stop()
                raise
        self.start_seconds = time.perf_counter() - started
        return self

    def send_line(self, line: str) -> None:
        """Writes a command line to the server's stdin (only with ready_line servers)."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        self._process.stdin.flush()

    def wait_line(self, expected: str, timeout_s: float) -> None:
        """Waits until the server prints ``expected`` as a whole line on stdout."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"{self.name} exited; {self.tail()}")
            if line == expected:
                return
        raise RuntimeError(
            f"{self.name}: no {expected!r} within {timeout_s:.0f} s; {self.tail()}"
        )

    def _copy_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        assert self._log is not None
        for line in self._process.stdout:
            with contextlib.suppress(ValueError):
                self._log.write(line)
                self._log.flush()
            self._lines.put(line.decode(errors="replace").strip())
        self._lines.put(None)  # the process ended: wake any waiter, who then sees it

    def _await_health(self, timeout_s: float) -> None:
        """Polls grpc.health.v1 Check (as a kubelet probe does) until the server is SERVING."""
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _attempt in range(int(timeout_s / _PROBE_INTERVAL_S) + 1):
                self._raise_if_exited()
                if time.monotonic() >= deadline:
                    break
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass  # not listening yet
                time.sleep(_PROBE_INTERVAL_S)
        self.stop()
        raise RuntimeError(f"{self.name}: not SERVING within {timeout_s:.0f} s; {self.tail()}")

    def _raise_if_exited(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self._process.returncode} during start-up; "
                f"{self.tail()}"
            )

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return "log tail:\n" + "\n".join(text[-lines:])
        return "no log"

    def rss_mb(self) -> float | None:
        """Current resident memory of the process tree (Ray: all its processes)."""
        total = 0
        for pid in process_tree(self.pid):
            total += read_kib(pid, "VmRSS") or 0
        return total / 1024 if total else None

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the server (tree) has used so far."""
        pids = process_tree(self.pid) if self.whole_tree else [self.pid]
        ticks = [t for t in (_cpu_ticks(pid) for pid in pids) if t is not None]
        return sum(ticks) / os.sysconf("SC_CLK_TCK") if ticks else None

    def record_peak_rss(self) -> float | None:
        """VmHWM (the kernel's high-water mark of resident memory) of the server process."""
        kib = read_kib(self.pid, "VmHWM")
        self.peak_rss_mb = None if kib is None else kib / 1024
        return self.peak_rss_mb

    def stop(self, timeout_s: float = 30.0) -> int | None:
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            self.record_peak_rss()
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, timeout_s)
                process.kill()
                process.wait(10)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if self._log is not None:
            self._log.close()
        return process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def speech_server(
    name: str, config: dict[str, Any], log_dir: Path, *, services: Sequence[str]
) -> ServerProcess:
    """``speech-server`` with ``config`` (settings keys) on free loopback ports."""
    port, metrics_port = free_port(), free_port()
    config = {**config, "server": {"http_port": 0, **config.get("server", {}), "host": LOOPBACK,
                                   "services": list(services)}}  # HTTP API off unless asked
    path = write_config(log_dir / f"{name}.yaml", config)
    argv = [*speech_server_command(), "--config", str(path), "--port", str(port),
            "--metrics-port", str(metrics_port), "--host", LOOPBACK]
    return ServerProcess(name, argv, log_dir, port=port, metrics_port=metrics_port)


def null_server(
    name: str, config: dict[str, Any], log_dir: Path, *, mode: str = "batched"
) -> ServerProcess:
    """The SpeechServer hosting the null engine (see bench.null_server for the modes:
    "batched", "no-batcher", "bare")."""
    port, metrics_port = free_port(), free_port()
    config = {**config, "server": {"http_port": 0, **config.get("server", {})}}  # gRPC only
    path = write_config(log_dir / f"{name}.yaml", config)
    argv = [*python_module("tools.bench.null_server"), "--config", str(path),
            "--port", str(port), "--metrics-port", str(metrics_port)]
    if mode != "batched":
        argv.append(f"--{mode}")
    serves_metrics = mode != "bare"
    return ServerProcess(
        name, argv, log_dir, port=port, metrics_port=metrics_port if serves_metrics else None
    )


def naive_server(engine: str, log_dir: Path) -> ServerProcess:
    """The naive baseline server (see bench.naive_server)."""
    port = free_port()
    argv = [*python_module("tools.bench.naive_server"), "--engine", engine,
            "--port", str(port)]
    return ServerProcess(f"naive-{engine}", argv, log_dir, port=port)


def plain_server(log_dir: Path) -> ServerProcess:
    """The plain STT server a user would write (see bench.plain_server)."""
    port = free_port()
    argv = [*python_module("tools.bench.plain_server"), "--port", str(port)]
    return ServerProcess("plain-stt", argv, log_dir, port=port)


def ray_server(log_dir: Path) -> ServerProcess:
    """The Ray Serve baseline (see bench.ray_baseline); configured through stdin lines."""
    port, http_port = free_port(), free_port()
    argv = [*python_module("tools.bench.ray_baseline"), "--grpc-port", str(port),
            "--http-port", str(http_port)]
    env = server_env({"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"})
    return ServerProcess(
        "ray-serve", argv, log_dir, port=port, ready_line="READY", env=env, whole_tree=True
    )


# -- other people's load on a shared machine -----------------------------------------------


def _busy_ticks() -> int:
    """Busy CPU time of the whole machine so far (all cores), in clock ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


def _own_ticks() -> int:
    """CPU time of this process and everything it started (servers, Ray) so far."""
    return sum(t for t in (_cpu_ticks(pid) for pid in process_tree(os.getpid())) if t)


class ForeignCpu:
    """Cores that processes outside this bench kept busy during an interval.

    The machine is shared: a measurement taken while others computed is not comparable to
    one taken alone. (Processes of ours that exit inside the interval count as foreign.)
    """

    def __init__(self) -> None:
        self._start = (time.monotonic(), _busy_ticks(), _own_ticks())

    def cores(self) -> float:
        started, busy, own = self._start
        elapsed = time.monotonic() - started
        if elapsed <= 0:
            return 0.0
        foreign = (_busy_ticks() - busy) - (_own_ticks() - own)
        return max(foreign, 0) / os.sysconf("SC_CLK_TCK") / elapsed


def await_quiet(max_wait_s: float, threshold_cores: float = 0.3, sample_s: float = 1.0) -> float:
    """Waits (at most ``max_wait_s``) until others use under ``threshold_cores`` for one
    sample; returns the seconds waited. Polling is the point here: load is not an event."""
    waited = 0.0
    while waited < max_wait_s:
        probe = ForeignCpu()
        time.sleep(sample_s)
        waited += sample_s
        if probe.cores() < threshold_cores:
            break
    return waited
