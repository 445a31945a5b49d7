"""Deadline-aware admission (batcher/admission.py): refused at arrival, never after waiting.

The learnt rate is seeded with a known figure (one second of compute per unit of cost)
so that the predictions are exact, and a gate holds the only instance busy while the
queue is built, so nothing depends on wall-clock time.
"""

from __future__ import annotations

import asyncio

import pytest

from batcher import Batcher, BatchPolicy, Overloaded, QueueFull, RecordingObserver
from speech_platform.errors import grpc_status_for
from tests.batcher.engines import Gated


async def _busy_batcher(policy: BatchPolicy, queued_cost: float) -> tuple[Batcher, Gated, list]:
    """One instance held busy by a request of cost 2, and ``queued_cost`` waiting behind."""
    engine = Gated()
    batcher: Batcher[int, int] = Batcher(engine.factory, policy, observer=RecordingObserver())
    await batcher.start()
    batcher._rate.observe(cost=1.0, seconds=1.0)  # seed: 1 s of compute per unit of cost
    tasks = [asyncio.ensure_future(batcher.submit(0, cost=2.0))]
    async with asyncio.timeout(10):
        while batcher.running < 1:  # noqa: ASYNC110 - the batcher has no event for this
            await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(batcher.submit(1, cost=queued_cost)))
    await asyncio.sleep(0)
    return batcher, engine, tasks


async def _finish(batcher: Batcher, engine: Gated, tasks: list) -> None:
    engine.gate.set()
    await asyncio.gather(*tasks)
    await batcher.close()


async def test_nothing_is_refused_before_a_batch_has_taught_the_rate():
    engine = Gated()
    engine.gate.set()
    batcher: Batcher[int, int] = Batcher(engine.factory, BatchPolicy(max_batch_size=1))
    await batcher.start()
    assert batcher.estimated_finish_s() is None
    assert await batcher.submit(7, cost=1000.0, timeout_s=0.001) == 7
    assert batcher.estimated_finish_s() is not None
    await batcher.close()


async def test_a_request_that_would_miss_its_deadline_is_refused_at_once():
    policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0)
    batcher, engine, tasks = await _busy_batcher(policy, queued_cost=5.0)
    # Ahead: 5 queued + half of the 2 running = 6 s, plus its own 1 s: 7 s.
    assert batcher.estimated_finish_s(cost=1.0) == pytest.approx(7.0)
    with pytest.raises(Overloaded) as refused:
        await batcher.submit(2, cost=1.0, timeout_s=4.0)
    assert "estimated to finish in 7.0 s, after its deadline (4.0 s)" in str(refused.value)
    assert refused.value.retry_after_s == pytest.approx(3.0)
    assert batcher.observer.rejections["admission"] == 1
    assert batcher.pending == 1  # never queued
    # The same request with time enough, or with no deadline, is accepted.
    tasks.append(asyncio.ensure_future(batcher.submit(3, cost=1.0, timeout_s=60.0)))
    tasks.append(asyncio.ensure_future(batcher.submit(4, cost=1.0)))
    await asyncio.sleep(0)
    assert batcher.pending == 3
    await _finish(batcher, engine, tasks)
    assert sorted(engine.computed) == [0, 1, 3, 4]  # the refused one never computed


async def test_the_latency_objective_refuses_without_a_deadline():
    # The queued request (1 s running half + its own 5 s = 6 s) fits an objective of 6.5 s;
    # a request behind it (7 s) does not.
    policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0, latency_objective_s=6.5)
    batcher, engine, tasks = await _busy_batcher(policy, queued_cost=5.0)
    assert batcher.pending == 1
    with pytest.raises(Overloaded, match=r"after its latency objective \(6\.5 s\)"):
        await batcher.submit(2, cost=1.0)
    await _finish(batcher, engine, tasks)


async def test_higher_priority_counts_only_the_work_ahead_of_it():
    policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0)
    batcher, engine, tasks = await _busy_batcher(policy, queued_cost=5.0)
    # Priority 1 is ahead of the queued priority-0 work: 1 s running half + 1 s own = 2 s.
    assert batcher.estimated_finish_s(cost=1.0, priority=1) == pytest.approx(2.0)
    tasks.append(asyncio.ensure_future(batcher.submit(5, cost=1.0, priority=1, timeout_s=4.0)))
    with pytest.raises(Overloaded):
        await batcher.submit(6, cost=1.0, priority=0, timeout_s=4.0)
    await _finish(batcher, engine, tasks)


async def test_admission_can_be_turned_off():
    policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0, admission=False)
    batcher, engine, tasks = await _busy_batcher(policy, queued_cost=5.0)
    tasks.append(asyncio.ensure_future(batcher.submit(2, cost=1.0, timeout_s=4.0)))
    await asyncio.sleep(0)
    assert batcher.pending == 2
    await _finish(batcher, engine, tasks)


def test_a_refusal_is_resource_exhausted_with_its_retry_delay():
    code, message, retry = grpc_status_for(Overloaded("stt: estimated ...", retry_after_s=2.5))
    assert code.name == "RESOURCE_EXHAUSTED" and retry == 2.5 and "estimated" in message
    assert issubclass(Overloaded, QueueFull)


async def test_admission_scales_its_estimate_by_how_late_admitted_requests_finished():
    policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0)
    batcher, engine, tasks = await _busy_batcher(policy, queued_cost=5.0)
    # Estimated 7 s: admitted with an 8 s deadline while estimates have held.
    tasks.append(asyncio.ensure_future(batcher.submit(2, cost=1.0, timeout_s=8.0)))
    await asyncio.sleep(0)
    assert batcher.pending == 2
    # Requests that waited behind a backlog finished 1.25x later than estimated (a noisy
    # host, say): the same request is now judged at 7 x 1.25 = 8.75 s and refused.
    for _ in range(20):
        batcher._lateness.observe(predicted_s=4.0, actual_s=5.0)
    with pytest.raises(Overloaded, match=r"estimated to finish in \d+\.\d s"):
        await batcher.submit(3, cost=1.0, timeout_s=8.0)
    # Ahead of it now: 5 + 1 queued + half of 2 running, plus its own 1: 8 s, x 1.25.
    with pytest.raises(Overloaded, match=r"estimated to finish in 10\.0 s"):
        await batcher.submit(3, cost=1.0, timeout_s=9.0)
    await _finish(batcher, engine, tasks)


async def test_a_margin_keeps_a_share_of_the_deadline_in_reserve():
    policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0, admission_margin=0.1)
    batcher, engine, tasks = await _busy_batcher(policy, queued_cost=5.0)
    # Estimated 7 s: inside a 7.5 s deadline, but not inside 90 % of it (6.75 s)...
    with pytest.raises(Overloaded, match=r"estimated to finish in 7\.0 s") as refused:
        await batcher.submit(2, cost=1.0, timeout_s=7.5)
    # ...and the retry delay is until it would fit inside that share.
    assert refused.value.retry_after_s == pytest.approx(0.25)
    # With 8 s, 90 % is 7.2 s: admitted.
    tasks.append(asyncio.ensure_future(batcher.submit(3, cost=1.0, timeout_s=8.0)))
    await asyncio.sleep(0)
    assert batcher.pending == 2
    await _finish(batcher, engine, tasks)
