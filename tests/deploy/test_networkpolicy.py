"""Only what must talk can talk: the NetworkPolicies evaluated on concrete connections."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import (
    GRPC_SERVICES,
    HTTP_SERVERS,
    NAMESPACE,
    WORKERS,
    Rendered,
    containers,
    pod_labels,
)
from tests.deploy.netpol import Pod, allowed
from tests.deploy.settings_env import container_env

GRPC, HTTP, METRICS, REDIS, SENTINEL, EXPORTER, DNS = 50051, 8000, 9464, 6379, 26379, 9121, 53
REDIS_GROUPS = ("redis-cache", "redis-jobs")
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
    assert not allowed(deny, workloads["stt"], workloads["redis-cache"], REDIS)


@pytest.mark.parametrize("name", sorted(GRPC_SERVICES))
def test_clients_reach_servers_only_on_their_grpc_and_http_ports(
    overlay: Rendered, name: str
) -> None:
    server = pods(overlay)[name]
    rules = policies(overlay)
    assert allowed(rules, CLIENT, server, GRPC)
    assert allowed(rules, CLIENT, server, HTTP) == (name in HTTP_SERVERS)
    assert not allowed(rules, CLIENT, server, METRICS)
    for port in (GRPC, HTTP):
        assert not allowed(rules, STRANGER, server, port)
        assert not allowed(rules, KEDA, server, port)


def test_nothing_outside_reaches_redis_or_workers(overlay: Rendered) -> None:
    rules, workloads = policies(overlay), pods(overlay)
    for source in (CLIENT, STRANGER, PROMETHEUS):
        for group in REDIS_GROUPS:
            for port in (REDIS, SENTINEL):
                assert not allowed(rules, source, workloads[group], port), (source.name, group)
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


def test_every_redis_user_reaches_every_redis_pod_and_nothing_else(overlay: Rendered) -> None:
    """Any pod of a group may be the master after a failover, and the Sentinels are asked
    first: users reach every Redis pod on both ports."""
    rules, workloads = policies(overlay), pods(overlay)
    users = [d for d in overlay.of_kind("Deployment")
             if any("SPEECH_CACHE__REDIS_URL" in container_env(overlay, c)
                    or "SPEECH_JOBS__BROKER_URL" in container_env(overlay, c)
                    for c in containers(d))]
    assert len(users) == len(GRPC_SERVICES) + len(WORKERS)
    for deployment in users:
        pod = workloads[deployment["metadata"]["name"]]
        for group in REDIS_GROUPS:
            assert allowed(rules, pod, workloads[group], REDIS), (pod.name, group)
            assert allowed(rules, pod, workloads[group], SENTINEL), (pod.name, group)
            assert not allowed(rules, pod, workloads[group], GRPC), (pod.name, group)
        assert not allowed(rules, pod, ELSEWHERE, 443), pod.name
        assert allowed(rules, pod, KUBE_DNS, DNS, "UDP"), pod.name


def test_servers_do_not_talk_to_each_other(overlay: Rendered) -> None:
    rules, workloads = policies(overlay), pods(overlay)
    assert not allowed(rules, workloads["stt"], workloads["tts-piper"], GRPC)
    assert not allowed(rules, workloads["worker-synthesis"], workloads["tts-kokoro"], GRPC)
    assert not allowed(rules, workloads["jobs"], workloads["stt"], GRPC)


def test_replication_sentinels_and_keda_reach_the_redis_pods(overlay: Rendered) -> None:
    rules, workloads = policies(overlay), pods(overlay)
    for group in REDIS_GROUPS:
        for port in (REDIS, SENTINEL):  # replication, and Sentinels watching each other
            assert allowed(rules, workloads[group], workloads[group], port), group
        assert not allowed(rules, workloads[group], workloads[group], GRPC)
    for port in (REDIS, SENTINEL):  # KEDA asks the jobs Sentinels, then reads the master
        assert allowed(rules, KEDA, workloads["redis-jobs"], port)


def test_evaluator_refuses_what_it_does_not_model() -> None:
    policy = {"metadata": {"namespace": NAMESPACE}, "spec": {
        "podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
        "policyTypes": ["Ingress"]}}
    with pytest.raises(NotImplementedError):
        allowed([policy], CLIENT, Pod(NAMESPACE, {"a": "b"}), GRPC)
