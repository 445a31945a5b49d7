"""Builds batchers from config, wired to the Prometheus metrics."""

from __future__ import annotations

import functools
import os
from typing import Any, TypeVar

from batcher import (
    Batcher,
    BatchPolicy,
    FanOutObserver,
    HandlerFactory,
    RecordingObserver,
    SharedDevice,
)
from speech_platform.compute_clock import NicedThreadsClock
from speech_platform.config import BatcherSettings
from speech_platform.metrics import (
    BATCH_QUEUED_CALLERS,
    BATCH_TOP_CALLER_SHARE,
    PrometheusBatchObserver,
)
from speech_platform.workpool import lower_thread_priority

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
        priority_aging_max_levels=settings.priority_aging_max_levels,
        target_latency_s=settings.target_latency_ms / 1000.0,
        admission=settings.admission,
        latency_objective_s=settings.latency_objective_ms / 1000.0,
        admission_margin=settings.admission_margin,
        max_caller_queue_share=settings.max_caller_queue_share,
        caller_presence_s=settings.caller_presence_s,
        express_instances=settings.express_instances,
        name=name,
    )


@functools.cache
def cpu_device() -> SharedDevice:
    """The CPU this process may run on, shared by every engine batcher that computes there,
    so that admission in each sees the others' work (batcher.admission.SharedDevice)."""
    clock = NicedThreadsClock() if NicedThreadsClock.available() else None
    return SharedDevice(parallelism=len(os.sched_getaffinity(0)), compute_clock=clock)


def _niced(factory: HandlerFactory[In, Out], nice: int, instances: int) -> HandlerFactory[In, Out]:
    """The factory, run after lowering its instance thread's priority (the model's own
    thread pools, started while it loads, inherit it). Express instances (indexes from
    ``instances`` on) get half the lowering: a light caller's one item, computing beside a
    flood's, then takes most of a core instead of an equal slice of a full CPU."""

    def build(index: int) -> Any:
        lower_thread_priority(nice if index < instances else nice // 2)
        return factory(index)

    return build


def make_batcher(
    factory: HandlerFactory[In, Out],
    settings: BatcherSettings,
    *,
    model: str,
    instances: int,
    threads: int = 1,
    on_cpu: bool = True,
) -> tuple[Batcher[In, Out], RecordingObserver]:
    """A batcher for one engine model; the RecordingObserver gives in-process counts.

    ``threads``: the compute threads of one instance (0: the engine's own choice, taken as
    every core); ``on_cpu``: the engine computes on this process's CPU (not a GPU), so it
    joins the CPU's shared admission.
    """
    recording = RecordingObserver()
    if settings.compute_nice:
        factory = _niced(factory, settings.compute_nice, instances)
    device = cpu_device() if on_cpu else None
    per_instance = threads if threads > 0 else cpu_device().parallelism
    batcher: Batcher[In, Out] = Batcher(
        factory,
        policy_from_settings(settings, model),
        instances=instances,
        observer=FanOutObserver(recording, PrometheusBatchObserver(model)),
        device=device,
        threads_per_instance=per_instance,
    )
    BATCH_QUEUED_CALLERS.labels(model).set_function(lambda: batcher.queue_share()[0])
    BATCH_TOP_CALLER_SHARE.labels(model).set_function(lambda: batcher.queue_share()[1])
    return batcher, recording
