"""Reads a server's Prometheus /metrics: batch sizes and batcher times, as deltas between two
scrapes (metrics are process-global counters, so only differences mean anything)."""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tools.bench.procs import LOOPBACK

log = logging.getLogger(__name__)


@dataclass
class Histogram:
    """Cumulative buckets {upper bound: count} plus sum and count."""

    buckets: dict[float, float] = field(default_factory=dict)
    total: float = 0.0
    count: float = 0.0

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            {b: c - earlier.buckets.get(b, 0.0) for b, c in self.buckets.items()},
            self.total - earlier.total,
            self.count - earlier.count,
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def per_bucket(self) -> dict[str, int]:
        """Non-cumulative counts per bucket, keyed "<=bound" (only non-empty ones)."""
        out: dict[str, int] = {}
        previous = 0.0
        for bound in sorted(self.buckets):
            count = self.buckets[bound] - previous
            previous = self.buckets[bound]
            if count > 0:
                out["<=inf" if bound == float("inf") else f"<={bound:g}"] = round(count)
        return out


def scrape(metrics_port: int, timeout_s: float = 10.0) -> str:
    url = f"http://{LOOPBACK}:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


def histogram(text: str, name: str, **labels: str) -> Histogram:
    """The histogram ``name`` summed over series whose labels include ``labels``."""
    result = Histogram()
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if not all(sample.labels.get(k) == v for k, v in labels.items()):
                continue
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                result.buckets[bound] = result.buckets.get(bound, 0.0) + sample.value
            elif sample.name == f"{name}_sum":
                result.total += sample.value
            elif sample.name == f"{name}_count":
                result.count += sample.value
    return result


_BATCHER = {
    "batch_size": "speech_batcher_batch_size",
    "queue_seconds": "speech_batcher_queue_seconds",
    "compute_seconds": "speech_batcher_compute_seconds",
}


class BatcherProbe:
    """Scrapes before and after a measurement and summarises what the batchers did."""

    def __init__(self, metrics_port: int | None, model: str | None = None) -> None:
        self.metrics_port = metrics_port
        self.labels = {"model": model} if model else {}
        self._before: str | None = None

    def begin(self) -> None:
        self._before = self._scrape()

    def _scrape(self) -> str | None:
        """The metrics text, or None when the server has no /metrics (then no batch sizes)."""
        if not self.metrics_port:
            return None
        try:
            return scrape(self.metrics_port)
        except OSError as error:
            log.warning("no metrics from port %s: %s", self.metrics_port, error)
            return None

    def end(self) -> dict[str, Any] | None:
        after = self._scrape() if self._before is not None else None
        if after is None or self._before is None:
            return None
        deltas = {
            key: histogram(after, name, **self.labels).minus(
                histogram(self._before, name, **self.labels)
            )
            for key, name in _BATCHER.items()
        }
        size = deltas["batch_size"]
        queue = deltas["queue_seconds"]
        compute = deltas["compute_seconds"]
        return {
            "batches": int(size.count),
            "mean_batch_size": size.mean,
            "batch_size_histogram": size.per_bucket(),
            "mean_queue_ms": None if queue.mean is None else queue.mean * 1000,
            "mean_batch_compute_ms": None if compute.mean is None else compute.mean * 1000,
        }


def counters(text: str, name: str, *label_names: str) -> dict[str, float]:
    """The counter ``name`` per value of ``label_names`` ("a/b" when several), non-zero only."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name.removesuffix("_total"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.value <= 0:
                continue
            key = "/".join(sample.labels.get(label, "") for label in label_names)
            found[key] = found.get(key, 0.0) + sample.value
    return found

