"""Hooks through which a batcher reports what it does (metrics live elsewhere)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol


class BatchObserver(Protocol):
    def pending_changed(self, pending: int) -> None: ...

    def rejected(self, reason: str) -> None:
        """reason: queue_full, deadline, cancelled or closed."""

    def batch_started(self, size: int, cost: float, queue_seconds: Sequence[float]) -> None: ...

    def batch_finished(self, size: int, compute_seconds: float, failed: int) -> None: ...


class RecordingObserver:
    """Keeps counts in memory: the default, and what tests and benchmarks read.

    >>> obs = RecordingObserver()
    >>> obs.batch_started(3, 3.0, [0.0, 0.0, 0.0]); obs.batch_sizes[3]
    1
    """

    def __init__(self) -> None:
        self.pending = 0
        self.batch_sizes: Counter[int] = Counter()
        self.rejections: Counter[str] = Counter()
        self.items_failed = 0
        self.compute_seconds = 0.0

    def pending_changed(self, pending: int) -> None:
        self.pending = pending

    def rejected(self, reason: str) -> None:
        self.rejections[reason] += 1

    def batch_started(self, size: int, cost: float, queue_seconds: Sequence[float]) -> None:
        self.batch_sizes[size] += 1

    def batch_finished(self, size: int, compute_seconds: float, failed: int) -> None:
        self.items_failed += failed
        self.compute_seconds += compute_seconds


class FanOutObserver:
    """Sends every event to several observers."""

    def __init__(self, *observers: BatchObserver) -> None:
        self.observers = observers

    def pending_changed(self, pending: int) -> None:
        for obs in self.observers:
            obs.pending_changed(pending)

    def rejected(self, reason: str) -> None:
        for obs in self.observers:
            obs.rejected(reason)

    def batch_started(self, size: int, cost: float, queue_seconds: Sequence[float]) -> None:
        for obs in self.observers:
            obs.batch_started(size, cost, queue_seconds)

    def batch_finished(self, size: int, compute_seconds: float, failed: int) -> None:
        for obs in self.observers:
            obs.batch_finished(size, compute_seconds, failed)
