"""Invariants of the workloads: probes, drain timing, resources, security, autoscaling, budgets."""

from __future__ import annotations

import re

import pytest

from speech_platform.config import Settings
from tests.deploy.manifests import (
    GRPC_SERVICES,
    HTTP_SERVERS,
    WORKERS,
    Rendered,
    containers,
    env_of,
    pod_labels,
    pod_spec,
    selector_matches,
)
from tests.deploy.settings_env import effective_settings

GRPC_PORT = Settings().server.port
METRICS_PORT = Settings().server.metrics_port
HTTP_PORT = Settings().server.http_port
#: Node labels and taints that mark spot/preemptible capacity on Karpenter, EKS, GKE and AKS.
SPOT_NODE_LABELS = {
    "karpenter.sh/capacity-type", "eks.amazonaws.com/capacityType",
    "cloud.google.com/gke-spot", "kubernetes.azure.com/scalesetpriority",
}
SPOT_TAINT_KEYS = {
    "karpenter.sh/capacity-type", "cloud.google.com/gke-spot",
    "kubernetes.azure.com/scalesetpriority",
}
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G)?$")
_FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | int | float) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"unparsable quantity {value!r}"
    return float(match.group(1)) * _FACTORS[match.group(2)]


def test_the_expected_workloads_exist(overlay: Rendered) -> None:
    assert overlay.names("Deployment") == set(GRPC_SERVICES) | set(WORKERS)
    assert overlay.names("StatefulSet") == {"redis-cache", "redis-jobs"}


def test_every_container_has_requests_and_limits(overlay: Rendered) -> None:
    for workload in overlay.workloads():
        for container in containers(workload):
            resources = container.get("resources", {})
            name = f"{workload['metadata']['name']}/{container['name']}"
            for kind in ("cpu", "memory"):
                request = resources.get("requests", {}).get(kind)
                limit = resources.get("limits", {}).get(kind)
                assert request is not None and limit is not None, f"{name}: {kind}"
                assert quantity(request) <= quantity(limit), f"{name}: {kind} request > limit"


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_grpc_servers_have_native_grpc_probes(overlay: Rendered, name: str) -> None:
    (container,) = containers(overlay.get("Deployment", name))
    health_name = GRPC_SERVICES[name]
    assert container["readinessProbe"]["grpc"] == {"port": GRPC_PORT, "service": health_name}
    # model loading: the startup probe must allow at least two minutes before liveness starts
    startup = container["startupProbe"]
    assert startup["grpc"] == {"port": GRPC_PORT, "service": health_name}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert container["livenessProbe"]["grpc"]["port"] == GRPC_PORT
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    http = {"http": HTTP_PORT} if name in HTTP_SERVERS else {}
    assert ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT, **http}
    # the HTTP API listens (by the settings the pod gets) where its port is declared, only
    deployment = overlay.get("Deployment", name)
    http_port = effective_settings(overlay, deployment, container).server.http_port
    assert http_port == (HTTP_PORT if name in HTTP_SERVERS else 0)


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_grpc_servers_run_their_one_service(overlay: Rendered, name: str) -> None:
    (container,) = containers(overlay.get("Deployment", name))
    service = {"stt": "stt", "tts-piper": "tts", "tts-kokoro": "tts", "jobs": "jobs"}[name]
    assert container["command"] == ["speech-server"]
    assert container["args"] == ["--services", service]


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_termination_grace_covers_prestop_and_drain(overlay: Rendered, name: str) -> None:
    deployment = overlay.get("Deployment", name)
    (container,) = containers(deployment)
    drain = effective_settings(overlay, deployment, container).server.drain_grace_s
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > drain + pre_stop, f"{name}: {grace} <= {drain} + {pre_stop}"
    # liveness must not kill a pod that is draining on purpose (health NOT_SERVING)
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > drain + pre_stop


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_servers_set_max_connection_age_with_grace_in_env(overlay: Rendered, name: str) -> None:
    deployment = overlay.get("Deployment", name)
    (container,) = containers(deployment)
    env = env_of(container)
    assert "SPEECH_SERVER__MAX_CONNECTION_AGE_S" in env
    assert "SPEECH_SERVER__MAX_CONNECTION_AGE_GRACE_S" in env
    server = effective_settings(overlay, deployment, container).server
    assert server.max_connection_age_s > 0
    if name == "stt":  # a streaming transcription may last stt.max_stream_seconds
        settings = effective_settings(overlay, deployment, container)
        assert server.max_connection_age_grace_s >= settings.stt.max_stream_seconds


def test_every_speech_env_var_is_a_real_setting(overlay: Rendered) -> None:
    """A misspelt SPEECH_ variable is silently ignored by the app: catch it here."""
    for deployment in overlay.of_kind("Deployment"):
        for container in containers(deployment):
            effective_settings(overlay, deployment, container)  # raises on unknown names


def test_env_references_point_at_earlier_variables(overlay: Rendered) -> None:
    """Kubernetes expands $(VAR) only for variables defined earlier in the list."""
    for workload in overlay.workloads():
        for container in containers(workload):
            seen: set[str] = set()
            for entry in container.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", entry.get("value", "")):
                    assert ref in seen, f"{workload['metadata']['name']}: {entry['name']} -> {ref}"
                seen.add(entry["name"])
            args = " ".join(container.get("args", []))
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", args):
                assert ref in seen, f"{workload['metadata']['name']}: args -> {ref}"


def test_cpu_engines_do_not_oversubscribe_their_cores(overlay: Rendered) -> None:
    """instances x threads per instance must fit the CPU limit (on CPU devices).

    A synthesis worker loads Piper and Kokoro but runs one job, mostly one tier, at a time:
    each engine's pool is checked on its own."""
    checked = 0
    for deployment in overlay.of_kind("Deployment"):
        (container,) = containers(deployment)
        cpu_limit = quantity(container["resources"]["limits"]["cpu"])
        settings = effective_settings(overlay, deployment, container)
        name = deployment["metadata"]["name"]
        pools = []
        if name in ("stt", "worker-transcription") and settings.stt.device == "cpu":
            pools.append(settings.stt.instances * settings.stt.cpu_threads)
        if name in ("tts-piper", "worker-synthesis"):
            pools.append(settings.tts.piper_instances * settings.tts.piper_threads)
        if name in ("tts-kokoro", "worker-synthesis"):
            pools.append(settings.tts.kokoro_instances * settings.tts.kokoro_threads)
        for threads in pools:
            checked += 1
            assert threads <= cpu_limit, f"{name}: {threads} threads on {cpu_limit} CPUs"
    assert checked >= 3


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(overlay: Rendered) -> None:
    for deployment in overlay.of_kind("Deployment"):
        assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_each_grpc_deployment_has_an_hpa_on_cpu_and_a_queue_metric(
    overlay: Rendered, name: str
) -> None:
    hpas = [h for h in overlay.of_kind("HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "name": name}]
    assert len(hpas) == 1
    spec = hpas[0]["spec"]
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    kinds = {m["type"] for m in spec["metrics"]}
    assert kinds == {"Resource", "Pods"}
    (cpu,) = [m for m in spec["metrics"] if m["type"] == "Resource"]
    assert cpu["resource"]["name"] == "cpu"
    (pods,) = [m for m in spec["metrics"] if m["type"] == "Pods"]
    assert pods["pods"]["metric"]["name"].startswith("speech_")


def test_every_deployment_has_a_matching_pdb(overlay: Rendered) -> None:
    pdbs = overlay.of_kind("PodDisruptionBudget")
    for deployment in overlay.of_kind("Deployment"):
        labels = pod_labels(deployment)
        matching = [
            p for p in pdbs if selector_matches(p["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(matching) == 1, deployment["metadata"]["name"]
        # never a budget that blocks every drain
        assert matching[0]["spec"].get("maxUnavailable", 0) >= 1


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_each_grpc_service_has_clusterip_and_headless_services(
    overlay: Rendered, name: str
) -> None:
    labels = pod_labels(overlay.get("Deployment", name))
    services = [s for s in overlay.of_kind("Service")
                if selector_matches(s["spec"]["selector"], labels)]
    by_type = {("headless" if s["spec"].get("clusterIP") == "None" else
                s["spec"].get("type", "ClusterIP")): s for s in services}
    assert set(by_type) == {"ClusterIP", "headless"}, name
    # gRPC on both (the headless one for client-side balancing); HTTP on the ClusterIP one
    (grpc_port,) = by_type["headless"]["spec"]["ports"]
    assert grpc_port["port"] == GRPC_PORT and grpc_port["targetPort"] == "grpc"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in by_type["ClusterIP"]["spec"]["ports"]}
    http = {"http": (HTTP_PORT, "http")} if name in HTTP_SERVERS else {}
    assert ports == {"grpc": (GRPC_PORT, "grpc"), **http}, name


def test_pods_are_non_root_and_locked_down(overlay: Rendered) -> None:
    """Pod Security "restricted", plus a read-only root filesystem everywhere."""
    namespace = overlay.get("Namespace", "speech")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in overlay.workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] != 0, name
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in containers(workload):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in security["capabilities"], name


def test_service_accounts_exist_and_mount_no_token(overlay: Rendered) -> None:
    accounts = {a["metadata"]["name"]: a for a in overlay.of_kind("ServiceAccount")}
    for workload in overlay.workloads():
        account = pod_spec(workload)["serviceAccountName"]
        assert account in accounts
        assert accounts[account]["automountServiceAccountToken"] is False


def test_speech_images_are_pinned_and_never_latest(overlay: Rendered) -> None:
    for workload in overlay.workloads():
        for container in containers(workload):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert "@sha256:" in image or (tag and tag != "latest"), image
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_workers_prefer_spot_nodes_and_tolerate_them(overlay: Rendered) -> None:
    for name in WORKERS:
        spec = pod_spec(overlay.get("Deployment", name))
        node_affinity = spec["affinity"]["nodeAffinity"]
        preferred = node_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
        keys = {e["key"] for term in preferred for e in term["preference"]["matchExpressions"]}
        assert keys == SPOT_NODE_LABELS
        # preferred, never required: workers still run on clusters without spot nodes
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in node_affinity
        assert {t["key"] for t in spec["tolerations"]} == SPOT_TAINT_KEYS


def test_gpu_overlay_puts_stt_and_kokoro_on_gpus(rendered_overlays: dict[str, Rendered]) -> None:
    gpu = rendered_overlays["gpu"]
    for name in ("stt", "tts-kokoro"):
        deployment = gpu.get("Deployment", name)
        (container,) = containers(deployment)
        resources = container["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == "1"
        assert resources["requests"]["nvidia.com/gpu"] == "1"
        assert container["image"].startswith("speech-platform-gpu:")
        tolerations = pod_spec(deployment)["tolerations"]
        gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        assert gpu_toleration in tolerations
    stt = gpu.get("Deployment", "stt")
    settings = effective_settings(gpu, stt, containers(stt)[0])
    assert settings.stt.device == "cuda"
    # a partial batcher override must not have reset the rest to generic defaults
    assert settings.stt.batcher.max_queue_size >= Settings().stt.batcher.max_queue_size
    for name in ("tts-piper", "jobs", *WORKERS):
        (container,) = containers(gpu.get("Deployment", name))
        assert "nvidia.com/gpu" not in container["resources"]["limits"], name


def test_cpu_overlay_requests_no_gpu(rendered_overlays: dict[str, Rendered]) -> None:
    cpu = rendered_overlays["cpu"]
    for workload in cpu.workloads():
        for container in containers(workload):
            assert "nvidia.com/gpu" not in container["resources"]["limits"]
            assert not container["image"].startswith("speech-platform-gpu")
