"""The mTLS overlay (k8s/overlays/cpu-mtls: components grpc-mtls and grpc-mtls-cert-manager):
valid objects, every gRPC server configured from the mounted Secret, probes on the
plaintext health port, and the Jobs API container started as the cluster would start it,
with throwaway certificates where the Secret would be mounted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from speech.v1 import jobs_pb2, jobs_pb2_grpc
from tests.deploy.manifests import (
    GRPC_SERVICES,
    K8S,
    NAMESPACE,
    ROOT,
    Rendered,
    containers,
    pod_spec,
    render,
)
from tests.deploy.schemas import validate
from tests.deploy.settings_env import container_env, effective_settings
from tests.deploy.test_manifest_commands import SERVING, Stderr, health
from tests.support.certificates import CertificateAuthority
from tests.support.redis import free_port

SECRET = "speech-grpc-tls"
MOUNT = "/etc/speech/tls"


@pytest.fixture(scope="module")
def mtls() -> Rendered:
    return Rendered("cpu-mtls", render(K8S / "overlays" / "cpu-mtls"))


def test_every_object_of_the_mtls_overlay_is_valid(mtls: Rendered) -> None:
    for obj in mtls.objects:
        validate(obj)
    assert mtls.names("Certificate") == {SECRET}


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_grpc_servers_read_the_mounted_secret_and_probe_the_health_port(
    mtls: Rendered, name: str
) -> None:
    deployment = mtls.get("Deployment", name)
    (container,) = containers(deployment)
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["grpc-tls"]["secret"]["secretName"] == SECRET
    assert mounts["grpc-tls"] == {"name": "grpc-tls", "mountPath": MOUNT, "readOnly": True}
    settings = effective_settings(mtls, deployment, container).server
    assert settings.tls.enabled and settings.tls.client_ca_file
    for path in (settings.tls.cert_file, settings.tls.key_file, settings.tls.client_ca_file):
        assert Path(path).parent == Path(MOUNT)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == settings.health_port != settings.port == ports["grpc"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == settings.health_port, probe


def test_the_certificate_names_every_grpc_service(mtls: Rendered) -> None:
    spec = mtls.get("Certificate", SECRET)["spec"]
    assert spec["secretName"] == SECRET
    assert "server auth" in spec["usages"]
    for service in GRPC_SERVICES:
        assert f"{service}.{NAMESPACE}.svc" in spec["dnsNames"]
        assert f"*.{service}-headless.{NAMESPACE}.svc.cluster.local" in spec["dnsNames"]


def test_jobs_container_serves_mtls_as_configured(
    mtls: Rendered, redis_url: str, tmp_path: Path
) -> None:
    """The manifest's env, with the Secret's files made here: probes get health over
    plaintext; the API needs a client certificate from the CA, whose CN is the caller."""
    ca = CertificateAuthority(tmp_path / "ca", "cluster-ca")
    server_cert = ca.issue("jobs", server=True)
    client = ca.issue("billing-service")
    deployment = mtls.get("Deployment", "jobs")
    (container,) = containers(deployment)
    # Redis here is the test's own plaintext server without replicas: the manifest's
    # Redis settings (Sentinel URLs, password and TLS files, replica acks) go.
    env = {
        k: v
        for k, v in container_env(mtls, container).items()
        if not any(part in k for part in ("REDIS", "BROKER_URL", "REPLICA_ACK"))
    }
    files = {"tls.crt": server_cert.cert, "tls.key": server_cert.key, "ca.crt": ca.cert}
    for key, value in list(env.items()):
        if value.startswith(MOUNT + "/"):
            env[key] = str(files[Path(value).name])
    port, health_port, metrics_port = free_port(), free_port(), free_port()
    env |= {
        "PATH": str(ROOT / ".venv" / "bin"), "HOME": str(tmp_path), "REDIS_URL": redis_url,
        "SPEECH_SERVER__PORT": str(port), "SPEECH_SERVER__METRICS_PORT": str(metrics_port),
        "SPEECH_SERVER__HEALTH_PORT": str(health_port),
        "SPEECH_SERVER__HTTP_PORT": "0",  # the HTTP API's fixed default port: off here
    }
    command = [str(ROOT / ".venv" / "bin" / container["command"][0]), *container["args"]]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    stderr = Stderr(process)
    try:
        assert stderr.ready.wait(120), stderr.tail()
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe:
            assert health(probe, GRPC_SERVICES["jobs"]) == SERVING
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            assert health(plaintext, "") == grpc.StatusCode.UNAVAILABLE
        credentials = grpc.ssl_channel_credentials(
            ca.cert.read_bytes(), client.key_pem, client.cert_pem
        )
        with grpc.secure_channel(f"localhost:{port}", credentials) as secure:
            listed = jobs_pb2_grpc.JobsStub(secure).ListJobs(
                jobs_pb2.ListJobsRequest(), timeout=10
            )
            assert all(job.owner == "billing-service" for job in listed.jobs)
    finally:
        process.terminate()
        process.wait(timeout=60)
