"""A manifest's command line, env and probe names against the real server.

The Jobs API Deployment loads no model, so its container can be started here as the cluster
would start it (same command, args, ConfigMap and env; only Redis, its credentials and the
ports are local):
the health name its probes ask for must turn SERVING within the startup probe's budget, and
SIGTERM must turn it NOT_SERVING and end the process cleanly within the pod's grace period.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy.manifests import GRPC_SERVICES, ROOT, Rendered, containers, pod_spec
from tests.deploy.settings_env import container_env
from tests.support.redis import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
READY_LINE = "speech-server ready"


class Stderr:
    """Collects a child's stderr on a thread and signals when the ready line appears."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line)
            if line.startswith(READY_LINE):
                self.ready.set()

    def tail(self) -> str:
        return "".join(self.lines[-40:])


def health(channel: grpc.Channel, service: str) -> int | grpc.StatusCode:
    """What a gRPC probe sees: the status, or the RPC error code when there is no answer."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        return status
    except grpc.RpcError as error:
        return error.code()


def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        if condition():
            return True
        pause.wait(every_s)
    return condition()


def test_jobs_container_starts_serves_its_health_name_and_drains(
    rendered_overlays: dict[str, Rendered], redis_url: str, tmp_path: Path
) -> None:
    overlay = rendered_overlays["cpu"]
    deployment = overlay.get("Deployment", "jobs")
    (container,) = containers(deployment)
    # Redis is local: the cluster's Sentinels, password and CA files are replaced by it.
    local_redis = ("SPEECH_CACHE__REDIS", "SPEECH_JOBS__REDIS", "SPEECH_JOBS__BROKER_URL",
                   "SPEECH_JOBS__REPLICA_ACKS")
    env = {key: value for key, value in container_env(overlay, container).items()
           if not key.startswith(local_redis)}
    port, metrics_port = free_port(), free_port()
    env |= {
        "PATH": str(ROOT / ".venv" / "bin"), "HOME": str(tmp_path), "REDIS_URL": redis_url,
        "SPEECH_SERVER__PORT": str(port), "SPEECH_SERVER__METRICS_PORT": str(metrics_port),
        "SPEECH_SERVER__HTTP_PORT": "0",  # the HTTP API's fixed default port: off here
    }
    command = [str(ROOT / ".venv" / "bin" / container["command"][0]), *container["args"]]
    startup = container["startupProbe"]
    startup_budget = startup["periodSeconds"] * startup["failureThreshold"]
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    drain_grace = float(env["SPEECH_SERVER__DRAIN_GRACE_S"])
    health_name = GRPC_SERVICES["jobs"]
    assert container["readinessProbe"]["grpc"]["service"] == health_name

    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    stderr = Stderr(process)
    try:
        assert stderr.ready.wait(startup_budget), stderr.tail()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert health(channel, health_name) == SERVING  # readiness and startup probes
            assert health(channel, "") == SERVING  # the liveness probe
            process.send_signal(signal.SIGTERM)
            # NOT_SERVING while draining, or no answer once the port is closed: either way
            # the readiness probe fails and the endpoint leaves the Service. The signal is
            # asynchronous, so the condition is polled, bounded by the drain grace.
            assert wait_until(lambda: health(channel, health_name) != SERVING,
                              timeout_s=drain_grace)
        assert process.wait(timeout=grace) == 0, stderr.tail()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("name", sorted(set(GRPC_SERVICES) - {"jobs"}))
def test_model_servers_use_the_same_command_shape_as_the_tested_one(
    rendered_overlays: dict[str, Rendered], name: str
) -> None:
    """The model servers are not started here (no model loads in these tests); their command
    differs from the Jobs API's only in the --services value, checked in test_workloads."""
    overlay = rendered_overlays["cpu"]
    (jobs,) = containers(overlay.get("Deployment", "jobs"))
    (other,) = containers(overlay.get("Deployment", name))
    assert other["command"] == jobs["command"]
    assert other["args"][0] == jobs["args"][0] == "--services"
    assert other["envFrom"] == jobs["envFrom"]
