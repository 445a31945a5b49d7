"""Builds batchers from config, wired to the Prometheus metrics."""

from __future__ import annotations

from typing import TypeVar

from batcher import Batcher, BatchPolicy, FanOutObserver, HandlerFactory, RecordingObserver
from speech_platform.config import BatcherSettings
from speech_platform.metrics import PrometheusBatchObserver

In = TypeVar("In")
Out = TypeVar("Out")


def policy_from_settings(settings: BatcherSettings, name: str) -> BatchPolicy:
    return BatchPolicy(
        max_batch_size=settings.max_batch_size,
        preferred_batch_sizes=tuple(settings.preferred_batch_sizes),
        max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
        max_queue_size=settings.max_queue_size,
        max_batch_cost=settings.max_batch_cost,
        similar_cost_ratio=settings.similar_cost_ratio,
        priority_aging_s=settings.priority_aging_s,
        target_latency_s=settings.target_latency_ms / 1000.0,
        admission=settings.admission,
        latency_objective_s=settings.latency_objective_ms / 1000.0,
        name=name,
    )


def make_batcher(
    factory: HandlerFactory[In, Out], settings: BatcherSettings, *, model: str, instances: int
) -> tuple[Batcher[In, Out], RecordingObserver]:
    """A batcher for one engine model; the RecordingObserver gives in-process counts."""
    recording = RecordingObserver()
    batcher: Batcher[In, Out] = Batcher(
        factory,
        policy_from_settings(settings, model),
        instances=instances,
        observer=FanOutObserver(recording, PrometheusBatchObserver(model)),
    )
    return batcher, recording
