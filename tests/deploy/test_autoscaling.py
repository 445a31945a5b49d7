"""Workers scale on their Celery queue with KEDA (to zero); gRPC servers' custom metrics exist."""

from __future__ import annotations

import re

import pytest

from speech_platform import metrics
from speech_platform.config import Settings
from speech_platform.redis_connection import redis_target
from tests.deploy.manifests import (
    K8S,
    NAMESPACE,
    WORKERS,
    Rendered,
    containers,
    load_yaml,
    pod_spec,
)
from tests.deploy.promql import exported_sample_names
from tests.deploy.settings_env import effective_settings

#: Metadata keys the KEDA redis-sentinel (list) scaler understands.
REDIS_SCALER_KEYS = {
    "addresses", "addressesFromEnv", "hosts", "hostsFromEnv", "ports", "portsFromEnv",
    "sentinelMaster", "sentinelMasterFromEnv", "listName", "listLength",
    "activationListLength", "databaseIndex", "enableTLS", "unsafeSsl", "usernameFromEnv",
    "passwordFromEnv", "sentinelUsernameFromEnv", "sentinelPasswordFromEnv",
}
ADAPTER_VALUES = K8S / "monitoring" / "prometheus-adapter-values.yaml"


def queue_of(kind: str, settings: Settings) -> str:
    return {"transcription": settings.jobs.transcription_queue,
            "synthesis": settings.jobs.synthesis_queue}[kind]


def scaled_object_for(overlay: Rendered, deployment: str) -> dict:
    found = [s for s in overlay.of_kind("ScaledObject")
             if s["spec"]["scaleTargetRef"]["name"] == deployment]
    assert len(found) == 1, deployment
    return found[0]


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_each_worker_consumes_one_kind(overlay: Rendered, name: str) -> None:
    (container,) = containers(overlay.get("Deployment", name))
    assert container["command"] == ["speech-worker"]
    assert container["args"] == ["--kinds", WORKERS[name]]


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_each_worker_queue_has_a_scaled_object_from_zero(overlay: Rendered, name: str) -> None:
    deployment = overlay.get("Deployment", name)
    settings = effective_settings(overlay, deployment, containers(deployment)[0])
    queue = queue_of(WORKERS[name], settings)
    spec = scaled_object_for(overlay, name)["spec"]
    assert spec["scaleTargetRef"]["kind"] == "Deployment"
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] >= 1
    assert spec["cooldownPeriod"] > 0
    redis_triggers = [t for t in spec["triggers"] if t["type"] == "redis-sentinel"]
    assert len(redis_triggers) == 1
    trigger = redis_triggers[0]
    meta = trigger["metadata"]
    assert set(meta) <= REDIS_SCALER_KEYS, set(meta) - REDIS_SCALER_KEYS
    assert meta["listName"] == queue
    assert int(meta["listLength"]) >= 1
    assert int(meta["activationListLength"]) == 0  # any waiting job wakes a worker
    # the Celery broker's database: the one in the workers' broker URL
    assert str(redis_target(settings.jobs.broker_url).db) == meta["databaseIndex"]
    assert trigger["authenticationRef"]["name"] in overlay.names("TriggerAuthentication")


def test_keda_asks_the_sentinels_the_workers_ask(overlay: Rendered) -> None:
    """KEDA follows failovers as the workers do: the same Sentinels, master name and TLS."""
    for name in WORKERS:
        deployment = overlay.get("Deployment", name)
        settings = effective_settings(overlay, deployment, containers(deployment)[0])
        broker = redis_target(settings.jobs.broker_url)
        assert broker.sentinel and broker.tls is not None
        trigger = next(t for t in scaled_object_for(overlay, name)["spec"]["triggers"]
                       if t["type"] == "redis-sentinel")
        meta = trigger["metadata"]
        addresses = [a.strip() for a in meta["addresses"].split(",")]
        assert addresses == [f"{host}:{port}" for host, port in broker.hosts]
        assert all(host.endswith(f".{NAMESPACE}.svc") for host, _ in broker.hosts)
        assert meta["sentinelMaster"] == broker.master_name
        assert meta["enableTLS"] == "true"


def test_trigger_authentication_reads_the_redis_secrets(overlay: Rendered) -> None:
    (auth,) = overlay.of_kind("TriggerAuthentication")
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    redis = overlay.get("StatefulSet", "redis-jobs")
    redis_env = {e["name"]: e for e in containers(redis)[0]["env"]}
    secret = redis_env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]
    assert refs["password"] == refs["sentinelPassword"] == (secret["name"], secret["key"])
    tls = next(v for v in pod_spec(redis)["volumes"] if v["name"] == "redis-tls")
    assert refs["ca"] == (tls["secret"]["secretName"], "ca.crt")


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_worker_grace_covers_its_drain(overlay: Rendered, name: str) -> None:
    deployment = overlay.get("Deployment", name)
    settings = effective_settings(overlay, deployment, containers(deployment)[0])
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace >= settings.jobs.worker_drain_s + 15


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_busy_workers_are_not_scaled_to_zero(overlay: Rendered, name: str) -> None:
    """The list only holds waiting jobs; running ones keep a replica through speech_jobs_running."""
    triggers = scaled_object_for(overlay, name)["spec"]["triggers"]
    (running,) = [t for t in triggers if t["type"] == "prometheus"]
    assert f"{metrics.JOBS_RUNNING._name}{{" in running["metadata"]["query"]
    assert f'pod=~"{name}-.*"' in running["metadata"]["query"]
    assert f'namespace="{NAMESPACE}"' in running["metadata"]["query"]


def adapter_rules() -> list[dict]:
    rules: list[dict] = load_yaml(ADAPTER_VALUES)["rules"]["custom"]
    return rules


def adapter_metric_names() -> set[str]:
    names = set()
    for rule in adapter_rules():
        series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"])
        assert series is not None
        names.add(re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"),
                         series.group(1)))
    return names


def test_every_hpa_pods_metric_is_served_by_the_adapter(overlay: Rendered) -> None:
    served = adapter_metric_names()
    for hpa in overlay.of_kind("HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["metric"]["name"] in served, hpa["metadata"]["name"]


def test_adapter_rules_read_metrics_the_platform_exports() -> None:
    exported = exported_sample_names()
    for rule in adapter_rules():
        series = rule["seriesQuery"].split("{", 1)[0].strip()
        assert series in exported, series
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
        for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            assert placeholder in rule["metricsQuery"]
