"""Offline schema validation of every rendered object.

Core kinds go through kubernetes-validate (the OpenAPI schemas of each Kubernetes release, strict:
unknown fields fail). The CRDs the platform uses are checked against typed models generated
from their CRDs (PyPI cloudcoil-models-keda, -prometheus-operator and -cert-manager); as
those models ignore unknown fields, an object must also survive a round trip unchanged, so a
misspelt field fails.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
from cloudcoil.models.cert_manager import v1 as cert_manager
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

#: The oldest Kubernetes these manifests promise to work on, and the newest schema at hand.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
CORE_API_VERSIONS = {
    "v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1",
}
CRD_MODELS: dict[tuple[str, str], Any] = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "PodMonitor"): prometheus_operator.PodMonitor,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_operator.PrometheusRule,
    ("cert-manager.io/v1", "Certificate"): cert_manager.Certificate,
}


class SchemaError(AssertionError):
    pass


def validate(obj: dict[str, Any]) -> None:
    """Raises SchemaError unless ``obj`` is valid for its kind (core or known CRD)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = f"{kind}/{obj.get('metadata', {}).get('name')}"
    if api_version in CORE_API_VERSIONS:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = "/".join(str(p) for p in error.path)
                raise SchemaError(
                    f"{name} (Kubernetes {version}) at {path}: {error.message}"
                ) from error
        return
    model = CRD_MODELS.get((api_version, kind))
    if model is None:
        raise SchemaError(f"{name}: no schema known for {api_version} {kind}")
    try:
        parsed = model.model_validate(obj)
    except Exception as error:  # pydantic's ValidationError, with every field path
        raise SchemaError(f"{name}: {error}") from error
    again = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = sorted(_dropped_paths(obj, again))
    if unknown:
        raise SchemaError(f"{name}: fields unknown to the {kind} schema: {unknown}")


def _dropped_paths(original: Any, kept: Any, prefix: str = "") -> list[str]:
    if isinstance(original, dict):
        if not isinstance(kept, dict):
            return [prefix or "."]
        found = []
        for key, value in original.items():
            here = f"{prefix}.{key}" if prefix else str(key)
            if key not in kept:
                found.append(here)
            else:
                found += _dropped_paths(value, kept[key], here)
        return found
    if isinstance(original, list) and isinstance(kept, list):
        return [p for i, (a, b) in enumerate(zip(original, kept, strict=False))
                for p in _dropped_paths(a, b, f"{prefix}[{i}]")]
    return []
