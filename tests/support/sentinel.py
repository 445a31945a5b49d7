"""A real Redis Sentinel group on loopback: a master, its replicas and three Sentinels, each a
``redis-server`` process of its own, all behind one password.

Failure detection is tuned down (``down-after-milliseconds``, ``failover-timeout``) so that a
killed master is replaced within seconds. Every wait is a bounded poll of a condition the
servers report (replication link up, Sentinels that know each other, a new master's address),
never a fixed sleep.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import redis

from tests.support.redis import (
    RedisServerProcess,
    RedisUnavailableError,
    free_port,
    redis_server_binary,
)
from tests.support.tls import Certificates

#: How long the group gets to form (replication up, Sentinels acquainted).
FORM_TIMEOUT_S = 30.0


def poll(condition: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.05) -> None:
    """Returns once ``condition()`` holds; raises TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass  # a server still starting, or the one being replaced
        time.sleep(step_s)  # the polling period of a bounded wait
    raise TimeoutError(f"{what}: not within {timeout_s}s")


class SentinelGroup:
    """``master_name`` served by ``servers[0]`` at first, with ``replicas`` replicas.

    With ``certificates`` every server and Sentinel also listens on a TLS port and
    replicates over TLS, and the Sentinels announce the TLS ports (``sentinels://``).
    """

    def __init__(
        self,
        *,
        password: str,
        replicas: int = 1,
        sentinels: int = 3,
        master_name: str = "speech-jobs",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        certificates: Certificates | None = None,
    ) -> None:
        self.password = password
        self.master_name = master_name
        self.certificates = certificates
        self.binary = redis_server_binary()
        self.servers: list[RedisServerProcess] = []
        self.sentinels: list[RedisServerProcess] = []
        self._tls_ports: dict[int, int] = {}
        self._replicas = replicas
        self._sentinel_count = sentinels
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms

    # ------------------------------------------------------------------ addresses

    def _announced_port(self, process: RedisServerProcess) -> int:
        return self._tls_ports.get(process.port, process.port)

    @property
    def url(self) -> str:
        """The clients' URL: ``sentinel://`` (or ``sentinels://`` with TLS), no password."""
        scheme = "sentinels" if self.certificates else "sentinel"
        hosts = ",".join(f"127.0.0.1:{self._announced_port(s)}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{self.master_name}/0"

    def _tls_args(self, process: RedisServerProcess) -> list[str]:
        if self.certificates is None:
            return []
        port = free_port()
        self._tls_ports[process.port] = port
        return [*self.certificates.redis_server_args(port), "--tls-replication", "yes"]

    def _server_args(self) -> list[str]:
        # Redis waits 5 s by default for more replicas before a full sync; no need here.
        return ["--masterauth", self.password, "--repl-diskless-sync-delay", "0"]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SentinelGroup:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        master = RedisServerProcess(self.binary, password=self.password)
        master.extra_args = [*self._server_args(), *self._tls_args(master)]
        self.servers.append(master.start())
        master_port = self._announced_port(master)
        for _ in range(self._replicas):
            replica = RedisServerProcess(self.binary, password=self.password)
            replica.extra_args = [
                *self._server_args(),
                "--replicaof", "127.0.0.1", str(master_port),
                *self._tls_args(replica),
            ]
            self.servers.append(replica.start())
        for replica in self.servers[1:]:
            poll(functools.partial(self._link_up, replica), FORM_TIMEOUT_S,
                 f"replica {replica.port} in sync")
        quorum = min(2, self._sentinel_count)
        common = [
            f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} {quorum}",
            f"sentinel auth-pass {self.master_name} {self.password}",
            f"sentinel down-after-milliseconds {self.master_name} {self._down_after_ms}",
            f"sentinel failover-timeout {self.master_name} {self._failover_timeout_ms}",
            f"sentinel parallel-syncs {self.master_name} {max(1, self._replicas)}",
            f"sentinel sentinel-pass {self.password}",
        ]
        # Told up front what they would otherwise learn from INFO (every 10 s) and hello
        # messages (every 2 s), the Sentinels are ready as soon as they run.
        common += [
            f"sentinel known-replica {self.master_name} 127.0.0.1 {self._announced_port(r)}"
            for r in self.servers[1:]
        ]
        processes = [
            RedisServerProcess(self.binary, password=self.password)
            for _ in range(self._sentinel_count)
        ]
        ids = [f"{index + 1:040x}" for index in range(len(processes))]
        for process in processes:
            process.extra_args = ["--sentinel", *self._tls_args(process)]
        for index, process in enumerate(processes):
            peers = [
                f"sentinel known-sentinel {self.master_name} 127.0.0.1 "
                f"{self._announced_port(other)} {ids[j]}"
                for j, other in enumerate(processes)
                if j != index
            ]
            process.config_text = "\n".join([*common, f"sentinel myid {ids[index]}", *peers, ""])
            self.sentinels.append(process.start())
        for sentinel in self.sentinels:
            poll(functools.partial(self._acquainted, sentinel), FORM_TIMEOUT_S,
                 f"sentinel {sentinel.port} knows the master, its replicas and the other sentinels")

    def _link_up(self, replica: RedisServerProcess) -> bool:
        with replica.client() as client:
            info = client.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _acquainted(self, sentinel: RedisServerProcess) -> bool:
        with sentinel.client() as client:
            state = client.execute_command("SENTINEL", "MASTER", self.master_name)
        if isinstance(state, list):
            state = dict(zip(state[::2], state[1::2], strict=True))
        fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in state.items()}
        return (
            int(fields["num-slaves"]) == self._replicas
            and int(fields["num-other-sentinels"]) == self._sentinel_count - 1
        )

    def close(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.close()

    def __enter__(self) -> SentinelGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the master

    def master_port(self) -> int:
        """The master's port as the Sentinels announce it now."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    _, port = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                    )
                return int(port)
            except (redis.RedisError, OSError, TypeError, ValueError):
                continue
        raise RedisUnavailableError("no sentinel answered")

    def master(self) -> RedisServerProcess:
        """The server the Sentinels name as master."""
        port = self.master_port()
        for server in self.servers:
            if self._announced_port(server) == port:
                return server
        raise RedisUnavailableError(f"the sentinels name an unknown master port {port}")

    def wait_for_new_master(
        self, old: RedisServerProcess, timeout_s: float = 30.0
    ) -> RedisServerProcess:
        """Blocks until every Sentinel names another server, and it says it is master."""
        old_port = self._announced_port(old)

        def switched() -> bool:
            ports = set()
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    _, port = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                    )
                ports.add(int(port))
            if len(ports) != 1 or old_port in ports:
                return False
            with self.master().client() as client:
                return bool(client.info("replication").get("role") == "master")

        poll(switched, timeout_s, f"a new master for {self.master_name}")
        return self.master()
