"""A small evaluator of Kubernetes NetworkPolicy semantics, for the subset the manifests use.

It answers "may pod A open a connection to pod B on port P?" the way a conforming CNI does:
a pod selected by any policy of a direction is isolated in that direction and allowed only what
some rule of those policies allows; a connection needs both the source's egress and the
destination's ingress. Selectors with matchExpressions, ipBlocks and named ports are outside
the subset: they raise instead of being guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Policy = dict[str, Any]


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    name: str = ""

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    if set(selector) - {"matchLabels"}:
        raise NotImplementedError(f"selector {selector} is outside the evaluated subset")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict[str, Any], pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        raise NotImplementedError("ipBlock peers are outside the evaluated subset")
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], pod.namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector"), pod.labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        number = entry.get("port")
        if isinstance(number, str):
            raise NotImplementedError("named ports are outside the evaluated subset")
        if entry.get("protocol", "TCP") == protocol and (number is None or number == port):
            return True
    return False


def _policy_types(policy: Policy) -> list[str]:
    types: list[str] = policy["spec"].get("policyTypes") or ["Ingress"]
    return types


def _direction_allows(
    policies: list[Policy], pod: Pod, peer: Pod, port: int, protocol: str, direction: str
) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in _policy_types(p)
        and _selects(p["spec"].get("podSelector"), pod.labels)
    ]
    if not selecting:
        return True  # not isolated in this direction
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(
    policies: list[Policy], source: Pod, destination: Pod, port: int, protocol: str = "TCP"
) -> bool:
    return _direction_allows(
        policies, source, destination, port, protocol, "Egress"
    ) and _direction_allows(policies, destination, source, port, protocol, "Ingress")
