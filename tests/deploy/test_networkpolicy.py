"""Only what must talk can talk: the NetworkPolicies evaluated on concrete connections."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import (
    GRPC_SERVICES,
    NAMESPACE,
    WORKERS,
    Rendered,
    containers,
    env_of,
    pod_labels,
)
from tests.deploy.netpol import Pod, allowed

GRPC, METRICS, REDIS, EXPORTER, DNS = 50051, 9464, 6379, 9121, 53
CLIENT = Pod("app", {"speech-platform/client": "true"}, "labelled client")
STRANGER = Pod("app", {"app": "something-else"}, "unlabelled pod")
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, "prometheus")
KEDA = Pod("keda", {"app.kubernetes.io/name": "keda-operator"}, "keda operator")
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, "kube-dns")
ELSEWHERE = Pod("internet", {}, "outside")


def pods(overlay: Rendered) -> dict[str, Pod]:
    return {w["metadata"]["name"]: Pod(NAMESPACE, pod_labels(w), w["metadata"]["name"])
            for w in overlay.workloads()}


def policies(overlay: Rendered) -> list[dict]:
    return overlay.of_kind("NetworkPolicy")


def test_default_deny_in_both_directions(overlay: Rendered) -> None:
    deny = [p for p in policies(overlay) if p["spec"]["podSelector"] == {}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert len(deny) == 1
    # with the default deny alone, nothing flows
    workloads = pods(overlay)
    assert not allowed(deny, CLIENT, workloads["stt"], GRPC)
    assert not allowed(deny, workloads["stt"], workloads["redis-master"], REDIS)


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_clients_reach_grpc_servers_only_on_the_grpc_port(overlay: Rendered, name: str) -> None:
    server = pods(overlay)[name]
    rules = policies(overlay)
    assert allowed(rules, CLIENT, server, GRPC)
    assert not allowed(rules, CLIENT, server, METRICS)
    assert not allowed(rules, STRANGER, server, GRPC)
    assert not allowed(rules, KEDA, server, GRPC)


def test_nothing_outside_reaches_redis_or_workers(overlay: Rendered) -> None:
    rules, workloads = policies(overlay), pods(overlay)
    for source in (CLIENT, STRANGER, PROMETHEUS):
        assert not allowed(rules, source, workloads["redis-master"], REDIS), source.name
    for worker in WORKERS:
        for port in (GRPC, METRICS, REDIS):
            assert not allowed(rules, CLIENT, workloads[worker], port)


def test_prometheus_scrapes_metrics_ports_only(overlay: Rendered) -> None:
    rules = policies(overlay)
    for name, pod in pods(overlay).items():
        port = EXPORTER if name.startswith("redis") else METRICS
        assert allowed(rules, PROMETHEUS, pod, port), name
        assert not allowed(rules, PROMETHEUS, pod, GRPC), name
        assert not allowed(rules, PROMETHEUS, pod, REDIS), name


def test_every_redis_user_reaches_the_master_and_only_it(overlay: Rendered) -> None:
    rules, workloads = policies(overlay), pods(overlay)
    users = [d for d in overlay.of_kind("Deployment")
             if any("REDIS_URL" in env_of(c) for c in containers(d))]
    assert len(users) == len(GRPC_SERVICES) + len(WORKERS)
    for deployment in users:
        pod = workloads[deployment["metadata"]["name"]]
        assert allowed(rules, pod, workloads["redis-master"], REDIS), pod.name
        assert not allowed(rules, pod, workloads["redis-replica"], REDIS), pod.name
        assert not allowed(rules, pod, ELSEWHERE, 443), pod.name
        assert allowed(rules, pod, KUBE_DNS, DNS, "UDP"), pod.name


def test_servers_do_not_talk_to_each_other(overlay: Rendered) -> None:
    rules, workloads = policies(overlay), pods(overlay)
    assert not allowed(rules, workloads["stt"], workloads["tts-piper"], GRPC)
    assert not allowed(rules, workloads["worker-synthesis"], workloads["tts-kokoro"], GRPC)
    assert not allowed(rules, workloads["jobs"], workloads["stt"], GRPC)


def test_replication_and_keda_reach_the_master(overlay: Rendered) -> None:
    rules, workloads = policies(overlay), pods(overlay)
    assert allowed(rules, workloads["redis-replica"], workloads["redis-master"], REDIS)
    assert not allowed(rules, workloads["redis-master"], workloads["redis-replica"], GRPC)
    assert allowed(rules, KEDA, workloads["redis-master"], REDIS)
    assert not allowed(rules, KEDA, workloads["redis-replica"], REDIS)


def test_evaluator_refuses_what_it_does_not_model() -> None:
    policy = {"metadata": {"namespace": NAMESPACE}, "spec": {
        "podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
        "policyTypes": ["Ingress"]}}
    with pytest.raises(NotImplementedError):
        allowed([policy], CLIENT, Pod(NAMESPACE, {"a": "b"}), GRPC)


def test_a_promoted_replica_takes_over_the_master_traffic(overlay: Rendered) -> None:
    """docs/deploy.md's manual failover: relabelling redis-replica-0 as master is enough."""
    rules, workloads = policies(overlay), pods(overlay)
    replica = workloads["redis-replica"]
    labels = {**replica.labels, "speech-platform/redis-role": "master"}
    promoted = Pod(NAMESPACE, labels, "promoted")
    service = overlay.get("Service", "redis-master")
    assert all(promoted.labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert allowed(rules, workloads["stt"], promoted, REDIS)
    assert allowed(rules, workloads["worker-transcription"], promoted, REDIS)
    assert allowed(rules, KEDA, promoted, REDIS)
    assert allowed(rules, replica, promoted, REDIS)  # the other replica re-syncs from it
