"""Measures an engine called directly from threads (no gRPC, no batcher): the ceiling.

Each thread owns one instance and calls it in a loop on the next items of the shared list,
so N threads are N instances, exactly as the server's pool would run them. The window rule
is the load generator's: warm-up until every thread has finished one call (first calls
allocate, so they never count), then count what finishes inside the window, extended (up to
``max_window_factor`` times) until every thread has finished a call inside it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")

#: Runs one call on a list of items; returns (text or None, audio seconds) per item.
EngineCall = Callable[[Sequence[Item]], list[tuple[str | None, float]]]


@dataclass
class Done(Generic[Item]):
    item: Item
    finished: float
    latency_s: float
    text: str | None
    audio_s: float


@dataclass
class ThreadedResult(Generic[Item]):
    window_s: float
    warmup_s: float
    done: list[Done[Item]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_threads(
    calls: Sequence[EngineCall[Item]],
    items: Sequence[Item],
    *,
    per_call: int = 1,
    window_s: float,
    max_warmup_s: float = 120.0,
    max_calls: int = 100_000,
    max_window_factor: float = 3.0,
) -> ThreadedResult[Item]:
    """One thread per entry of ``calls``, each taking ``per_call`` items per call."""
    counter = itertools.count()
    lock = threading.Lock()
    stop = threading.Event()
    first = [threading.Event() for _ in calls]
    counted = [threading.Event() for _ in calls]  # a call of this thread ended in the window
    window: list[float] = []
    result: ThreadedResult[Item] = ThreadedResult(window_s, 0.0)

    def worker(index: int, call: EngineCall[Item]) -> None:
        for _ in range(max_calls):
            if stop.is_set():
                return
            start = next(counter) * per_call
            batch = [items[(start + k) % len(items)] for k in range(per_call)]
            sent = time.perf_counter()
            try:
                outcomes = call(batch)
            except Exception as error:  # recorded; the measurement says it failed
                with lock:
                    result.errors.append(repr(error))
                first[index].set()
                return
            finished = time.perf_counter()
            first[index].set()
            with lock:
                if window and window[0] <= finished <= window[1]:
                    counted[index].set()
                    for item, (text, audio_s) in zip(batch, outcomes, strict=True):
                        result.done.append(Done(item, finished, finished - sent, text, audio_s))

    threads = [
        threading.Thread(target=worker, args=(i, call), daemon=True)
        for i, call in enumerate(calls)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    deadline = started + max_warmup_s
    for event in first:
        event.wait(max(deadline - time.perf_counter(), 0.0))
    with lock:
        now = time.perf_counter()
        window.extend([now, now + window_s * max_window_factor])
    result.warmup_s = now - started
    stop.wait(window_s)  # the window itself: a wall-clock interval
    for event in counted:  # a slow engine: extend until every thread has counted once
        event.wait(max(window[1] - time.perf_counter(), 0.0))
    with lock:
        end = min(time.perf_counter(), window[1])
        window[1] = end
        result.done = [d for d in result.done if d.finished <= end]
        result.window_s = end - window[0]
    stop.set()
    for thread in threads:
        thread.join(timeout=max_warmup_s)
    return result
