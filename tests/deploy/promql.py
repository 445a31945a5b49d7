"""PromQL helpers: the sample names the platform exports, and promtool (real, from Debian)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from speech_platform import metrics
from tools.fetch.promtool import promtool_path

#: Metrics other exporters provide: redis_exporter sidecars and kube-state-metrics.
EXTERNAL_METRICS = {
    "redis_up", "redis_key_size", "redis_memory_used_bytes",
    "kube_deployment_status_replicas_available",
}
_IDENTIFIER = re.compile(r"\b((?:speech|redis|kube)_[a-zA-Z0-9_]+)\b")


def exported_sample_names() -> set[str]:
    """Every sample name speech_platform.metrics can produce (as Prometheus stores them)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        base = value._name
        if isinstance(value, Counter):
            names.add(f"{base}_total")
        elif isinstance(value, Histogram):
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count"})
        elif isinstance(value, Gauge):
            names.add(base)
    return names


def referenced_metrics(expr: str) -> set[str]:
    """Metric-looking identifiers in a PromQL expression (labels and strings stripped)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_by = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "",
                        without_matchers)
    return set(_IDENTIFIER.findall(without_by))


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool_path()), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def check_expressions(
    expressions: dict[str, str], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """promtool's parser on bare PromQL: each expression becomes a recording rule."""
    rules = [{"record": f"check:{re.sub(r'[^a-zA-Z0-9_]', '_', name)}", "expr": expr}
             for name, expr in expressions.items()]
    path = workdir / "expressions.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    return promtool("check", "rules", path.name, cwd=workdir)
