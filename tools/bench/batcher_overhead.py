"""The batcher alone, in-process: what a request pays for going through it.

Any asyncio server must run a blocking engine call off the event loop, so the honest
reference is one ``run_in_executor`` hop to a single worker thread (what a server without a
batcher would do). The batcher is measured with a batch function that does nothing, built
by ``make_batcher`` exactly as services build theirs (Prometheus observer included), with
no queue delay. Its overhead is its latency minus the hop's, request by request at
concurrency 1, plus its throughput with many concurrent submitters.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from speech_platform.batching import make_batcher
from speech_platform.config import BatcherSettings
from tools.bench.stats import LatencySummary


def _noop(items: list[int]) -> list[int]:
    return items


async def _sequential_hop(count: int, time_cap_s: float) -> list[float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    deadline = time.perf_counter() + time_cap_s
    with ThreadPoolExecutor(1) as executor:
        for index in range(count):
            started = time.perf_counter()
            await loop.run_in_executor(executor, _noop, [index])
            latencies.append(time.perf_counter() - started)
            if started > deadline:
                break
    return latencies


async def _sequential_batcher(count: int, time_cap_s: float, instances: int) -> list[float]:
    settings = BatcherSettings(max_batch_size=8, max_queue_delay_ms=0.0, max_queue_size=4096)
    batcher, _ = make_batcher(lambda _i: _noop, settings, model="bench-null", instances=instances)
    await batcher.start()
    latencies: list[float] = []
    deadline = time.perf_counter() + time_cap_s
    try:
        for index in range(count):
            started = time.perf_counter()
            await batcher.submit(index)
            latencies.append(time.perf_counter() - started)
            if started > deadline:
                break
    finally:
        await batcher.close(5.0)
    return latencies


async def _concurrent_batcher(
    concurrency: int, window_s: float, instances: int
) -> dict[str, Any]:
    settings = BatcherSettings(max_batch_size=8, max_queue_delay_ms=0.0, max_queue_size=4096)
    batcher, recording = make_batcher(
        lambda _i: _noop, settings, model="bench-null", instances=instances
    )
    await batcher.start()
    latencies: list[float] = []
    stop_at = time.perf_counter() + window_s

    async def submitter() -> None:
        for index in range(10_000_000):  # bounded; the window ends it long before
            if time.perf_counter() >= stop_at:
                return
            started = time.perf_counter()
            await batcher.submit(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(submitter() for _ in range(concurrency)))
    finally:
        elapsed = time.perf_counter() - started
        await batcher.close(5.0)
    batches = sum(recording.batch_sizes.values())
    items = sum(size * n for size, n in recording.batch_sizes.items())
    return {
        "concurrency": concurrency,
        "items_per_s": len(latencies) / elapsed,
        "mean_batch_size": items / batches if batches else None,
        "latency": LatencySummary.of(latencies).as_dict(),
    }


def measure(
    *, count: int = 5000, time_cap_s: float = 5.0, concurrency: int = 16, window_s: float = 2.0,
    instances: int = 1,
) -> dict[str, Any]:
    """Runs in a fresh event loop; bounded by ``count`` requests and ``time_cap_s``."""

    async def main() -> dict[str, Any]:
        await _sequential_batcher(200, 1.0, instances)  # warm-up: thread start, imports
        hop = LatencySummary.of(await _sequential_hop(count, time_cap_s))
        alone = LatencySummary.of(await _sequential_batcher(count, time_cap_s, instances))
        loaded = await _concurrent_batcher(concurrency, window_s, instances)
        return {
            "executor_hop": hop.as_dict(),
            "batcher_sequential": alone.as_dict(),
            "overhead_p50_ms": alone.p50_ms - hop.p50_ms,
            "batcher_concurrent": loaded,
            "settings": {"max_batch_size": 8, "max_queue_delay_ms": 0.0, "instances": instances},
        }

    return asyncio.run(main())
