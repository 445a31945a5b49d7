"""Blocking preparation work (decoding, phonemizing) shared fairly between callers, and
model threads that yield the CPU to the event loop."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from speech_platform.batching import make_batcher
from speech_platform.config import BatcherSettings
from speech_platform.workpool import FairPool


async def test_a_flood_of_jobs_delays_another_caller_by_no_more_than_the_jobs_running():
    pool = FairPool(workers=1, name="test-fair")
    gate = threading.Event()
    started: list[str] = []

    def job(name: str) -> str:
        gate.wait(timeout=30)
        started.append(name)
        return name

    flood = [asyncio.ensure_future(pool.run("flood", job, f"f{k}")) for k in range(20)]
    await asyncio.sleep(0)
    polite = asyncio.ensure_future(pool.run("polite", job, "p"))
    await asyncio.sleep(0)
    assert pool.waiting == 20  # f0 is running, 19 of the flood and the polite one wait
    gate.set()
    assert await polite == "p"
    await asyncio.gather(*flood)
    assert started[:3] == ["f0", "p", "f1"]  # next after the running job, not 21st
    pool.close()


async def test_a_cancelled_job_that_has_not_started_never_runs():
    pool = FairPool(workers=1, name="test-cancel")
    gate = threading.Event()
    ran: list[int] = []

    def job(n: int) -> int:
        gate.wait(timeout=30)
        ran.append(n)
        return n

    first = asyncio.ensure_future(pool.run("a", job, 1))
    second = asyncio.ensure_future(pool.run("a", job, 2))
    await asyncio.sleep(0)
    second.cancel()
    gate.set()
    assert await first == 1
    with pytest.raises(asyncio.CancelledError):
        await second
    assert ran == [1]
    pool.close()


async def test_an_error_in_a_job_reaches_its_caller_and_the_pool_goes_on():
    pool = FairPool(workers=2, name="test-error")
    with pytest.raises(ZeroDivisionError):
        await pool.run("a", lambda: 1 / 0)
    assert await pool.run("a", lambda: 42) == 42
    pool.close()


async def test_model_threads_run_at_a_lower_cpu_priority_than_the_event_loop():
    seen: list[tuple[int, int]] = []

    def factory(index: int):
        def run_batch(items: list[int]) -> list[int]:
            tid = threading.get_native_id()
            seen.append((tid, os.getpriority(os.PRIO_PROCESS, tid)))
            return items

        return run_batch

    batcher, _ = make_batcher(
        factory, BatcherSettings(compute_nice=7), model="test-nice", instances=1, on_cpu=False
    )
    await batcher.start()
    assert await batcher.submit(3) == 3
    await batcher.close()
    ((tid, nice),) = seen
    assert tid != threading.get_native_id()
    assert nice >= 7
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 7  # the loop's own
