"""Admission that sees past its own queue: reservations and batchers sharing a CPU.

A burst arrives faster than requests are prepared (decoded, phonemized), so a batcher
that judged each arrival by its queue alone would find it empty and admit them all;
``reserve`` holds the cost of admitted-but-unprepared work. And two batchers on the same
cores (``SharedDevice``) count each other's work, so a burst on both is not admitted
twice over. Rates are seeded (1 s of compute per unit of cost) and instances held busy by
a gate, so every prediction is exact and nothing depends on timing.
"""

from __future__ import annotations

import asyncio

import pytest

from batcher import Batcher, BatchPolicy, CallerOverloaded, Overloaded, QueueFull, SharedDevice
from tests.batcher.engines import Gated, Metered

POLICY = BatchPolicy(max_batch_size=1, max_queue_delay_s=0)


async def _seeded(engine: Gated, device: SharedDevice | None = None, **kw) -> Batcher:
    batcher: Batcher[int, int] = Batcher(engine.factory, POLICY, device=device, **kw)
    await batcher.start()
    batcher._rate.observe(cost=1.0, seconds=1.0)
    return batcher


async def test_a_reservation_holds_its_cost_against_later_arrivals_until_released():
    engine = Gated()
    engine.gate.set()
    batcher = await _seeded(engine)
    # Nothing queued: 1 s for a request of cost 1.
    assert batcher.estimated_finish_s(cost=1.0) == pytest.approx(1.0)
    promise = batcher.reserve(5.0, timeout_s=10.0)
    # Five seconds promised ahead now count, though nothing is queued yet.
    assert batcher.pending == 0
    assert batcher.estimated_finish_s(cost=1.0) == pytest.approx(6.0)
    with pytest.raises(Overloaded, match=r"estimated to finish in 6\.0 s"):
        batcher.reserve(1.0, timeout_s=4.0)
    promise.release()
    promise.release()  # idempotent: released once
    assert batcher.estimated_finish_s(cost=1.0) == pytest.approx(1.0)
    with batcher.reserve(1.0, timeout_s=4.0):
        assert batcher.demand_core_s() == pytest.approx(1.0)
    assert batcher.demand_core_s() == 0.0
    await batcher.close()


async def test_a_reservation_for_several_items_is_judged_on_the_instances_in_parallel():
    engine = Gated()
    engine.gate.set()
    batcher = await _seeded(engine, instances=2)
    # 6 units in 3 sentences over 2 instances: judged as 3 s of own compute, not 6.
    with pytest.raises(Overloaded):
        batcher.reserve(6.0, timeout_s=2.5, items=3)
    with batcher.reserve(6.0, timeout_s=3.5, items=3):
        pass
    await batcher.close()


async def test_batchers_on_one_device_count_each_others_work():
    cpu = SharedDevice(parallelism=1)
    stt_engine, tts_engine = Gated(), Gated()
    stt = await _seeded(stt_engine, cpu)
    tts = await _seeded(tts_engine, cpu)
    alone = stt.estimated_finish_s(cost=1.0)
    assert alone == pytest.approx(1.0)
    # TTS has 4 s of work queued (one running, held by its gate, and three waiting).
    tasks = [asyncio.ensure_future(tts.submit(i, cost=1.0)) for i in range(4)]
    async with asyncio.timeout(10):
        while tts.running < 1:  # noqa: ASYNC110 - the batcher has no event for this
            await asyncio.sleep(0)
    assert tts.demand_core_s() == pytest.approx(3.5)
    # An STT request of cost 1 now shares the one core with TTS's work: twice as slow.
    assert stt.estimated_finish_s(cost=1.0) == pytest.approx(2.0)
    # STT work queued ahead (3 s) shares the core with as much of TTS's: 3 + 3 + own 2.
    stt_tasks = [asyncio.ensure_future(stt.submit(i, cost=1.0)) for i in range(4)]
    async with asyncio.timeout(10):
        while stt.running < 1:  # noqa: ASYNC110
            await asyncio.sleep(0)
    assert stt.estimated_finish_s(cost=1.0) == pytest.approx(3.5 + 3.5 + 2.0)
    # A batcher alone would have predicted 4.5 s and admitted a 5 s deadline.
    with pytest.raises(Overloaded):
        await stt.submit(9, cost=1.0, timeout_s=5.0)
    stt_engine.gate.set()
    tts_engine.gate.set()
    await asyncio.gather(*tasks, *stt_tasks)
    await stt.close()
    await tts.close()
    assert cpu.others(stt) == []  # a closed batcher leaves the device


def test_contention_is_the_mean_of_busy_threads_per_core_over_the_batch():
    times = iter([0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0])
    cpu = SharedDevice(parallelism=1, clock=lambda: next(times))
    mark = cpu.enter(1.0)  # our batch: [0, 2]
    cpu.enter(1.0)  # a neighbour joins at 1 s
    # Busy thread-seconds over [0, 2]: 2 + 1 = 3, on one core: it ran 1.5x slower.
    assert cpu.contention_since(mark) == pytest.approx(1.5)
    cpu.exit(1.0)
    cpu.exit(1.0)
    assert cpu.contention_since(cpu.enter(0.0)) == 1.0  # nothing busy: never below 1


def test_contention_never_speeds_a_batch_up():
    times = iter([0.0, 0.0, 1.0])
    cpu = SharedDevice(parallelism=4, clock=lambda: next(times))
    mark = cpu.enter(1.0)  # one thread on four cores: as fast as alone, not 4x faster
    assert cpu.contention_since(mark) == 1.0


def test_measured_contention_is_running_plus_waiting_over_running():
    """With a compute clock, what the threads waited for a CPU decides, not the count of
    busy threads: here one thread on two cores (counted: no contention) waited 0.6 s for
    every 1 s it ran, because something outside the batchers took the CPU."""
    times = iter([0.0, 0.0, 1.0])
    readings = iter([(10.0, 4.0), (11.0, 4.6)])
    cpu = SharedDevice(
        parallelism=2, clock=lambda: next(times), compute_clock=lambda: next(readings)
    )
    mark = cpu.enter(1.0)
    assert cpu.contention_since(mark) == pytest.approx(1.6)


def test_a_measurement_is_believed_up_to_twice_the_counted_contention():
    """Threads that only waited (here 9 s for 1 s run) cannot make a batch look ten times
    faster than it ran: one busy thread on two cores (counted 1) is believed up to 2."""
    times = iter([0.0, 0.0, 1.0])
    readings = iter([(0.0, 0.0), (1.0, 9.0)])
    cpu = SharedDevice(
        parallelism=2, clock=lambda: next(times), compute_clock=lambda: next(readings)
    )
    assert cpu.contention_since(cpu.enter(1.0)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("later", "why"),
    [((10.001, 4.5), "too little CPU time to judge by"), (None, "the clock stopped answering")],
)
def test_without_a_usable_reading_busy_threads_per_core_stand_in(later, why):
    times = iter([0.0, 0.0, 1.0])
    readings = iter([(10.0, 4.0), later])
    cpu = SharedDevice(
        parallelism=1, clock=lambda: next(times), compute_clock=lambda: next(readings)
    )
    mark = cpu.enter(3.0)  # three threads on one core for the whole second
    assert cpu.contention_since(mark) == pytest.approx(3.0), why


def test_measured_contention_never_speeds_a_batch_up():
    times = iter([0.0, 0.0, 1.0])
    readings = iter([(0.0, 0.0), (1.0, 0.0)])
    cpu = SharedDevice(
        parallelism=2, clock=lambda: next(times), compute_clock=lambda: next(readings)
    )
    assert cpu.contention_since(cpu.enter(1.0)) == 1.0


async def _running_one(batcher: Batcher, caller: str) -> asyncio.Future:
    busy = asyncio.ensure_future(batcher.submit(0, caller=caller))
    async with asyncio.timeout(10):
        while batcher.running < 1:  # noqa: ASYNC110 - the batcher has no event for this
            await asyncio.sleep(0)
    return busy


async def test_one_caller_may_hold_only_its_share_of_the_queue_while_others_are_present():
    engine = Gated()
    policy = BatchPolicy(
        max_batch_size=1, max_queue_delay_s=0, max_queue_size=8, max_caller_queue_share=0.5
    )
    batcher: Batcher[int, int] = Batcher(engine.factory, policy)
    await batcher.start()
    busy = await _running_one(batcher, "flood")
    polite = [asyncio.ensure_future(batcher.submit(6, caller="polite"))]  # another caller
    flood = [asyncio.ensure_future(batcher.submit(k, caller="flood")) for k in range(1, 5)]
    await asyncio.sleep(0)
    with pytest.raises(CallerOverloaded, match="max_caller_queue_share"):
        await batcher.submit(5, caller="flood")  # its fifth waiting: over 0.5 of 8
    polite.append(asyncio.ensure_future(batcher.submit(7, caller="polite")))  # room for others
    await asyncio.sleep(0)
    assert batcher.pending == 6
    engine.gate.set()
    await asyncio.gather(busy, *flood, *polite)
    await batcher.close()
    assert 5 not in engine.computed and {6, 7} <= set(engine.computed)


async def test_a_caller_alone_may_fill_the_whole_queue_until_another_arrives():
    engine = Metered()
    policy = BatchPolicy(
        max_batch_size=1, max_queue_delay_s=0, max_queue_size=8, max_caller_queue_share=0.5,
        caller_presence_s=60.0,
    )
    batcher: Batcher[int, int] = Batcher(engine.factory, policy)
    await batcher.start()
    busy = await _running_one(batcher, "proxy")
    # Alone (every client behind one proxy, no auth): the whole queue is its to use...
    lone = [asyncio.ensure_future(batcher.submit(k, caller="proxy")) for k in range(1, 9)]
    await asyncio.sleep(0)
    assert batcher.pending == 8
    with pytest.raises(QueueFull) as full:
        await batcher.submit(9, caller="proxy")
    assert not isinstance(full.value, CallerOverloaded)  # full for everyone: may spill over
    # ...until another caller arrives: refused too, but present from now on, so the first
    # caller may not take the room that frees up past its share.
    with pytest.raises(QueueFull):
        await batcher.submit(10, caller="newcomer")
    engine.permits.release(3)
    await asyncio.gather(busy, *lone[:2])  # three done: 6 of the proxy's still wait
    with pytest.raises(CallerOverloaded, match="max_caller_queue_share"):
        await batcher.submit(11, caller="proxy")
    newcomer = asyncio.ensure_future(batcher.submit(12, caller="newcomer"))
    await asyncio.sleep(0)
    engine.permits.release(100)
    assert await newcomer == 12
    assert await asyncio.gather(*lone) == list(range(1, 9))
    await batcher.close()


async def test_a_refusal_caused_by_the_callers_own_backlog_says_so():
    engine = Gated()
    batcher = await _seeded(engine)
    busy = asyncio.ensure_future(batcher.submit(0, caller="flood"))
    async with asyncio.timeout(10):
        while batcher.running < 1:  # noqa: ASYNC110
            await asyncio.sleep(0)
    flood = [asyncio.ensure_future(batcher.submit(k, caller="flood")) for k in range(1, 6)]
    await asyncio.sleep(0)
    # Alone, the flood's sixth is late because of all the work there is: plain Overloaded
    # (TTS may try the other engine)...
    with pytest.raises(Overloaded) as alone:
        await batcher.submit(9, caller="flood", timeout_s=3.0)
    assert not isinstance(alone.value, CallerOverloaded)
    # ...another caller arrives, ahead of all but one of the flood's, and is admitted...
    polite = asyncio.ensure_future(batcher.submit(8, caller="polite", timeout_s=3.0))
    await asyncio.sleep(0)
    # ...and now the flood's next is late because of its own waiting work.
    with pytest.raises(CallerOverloaded, match="this caller's own waiting work") as own:
        await batcher.submit(9, caller="flood", timeout_s=3.0)
    # Its retry delay is until its own five waiting seconds are done (7.5 s predicted with
    # them, 2.5 s without), not the 4.5 s it overshoots by.
    assert own.value.retry_after_s == pytest.approx(5.0)
    # Without a caller the same request is late because of everyone's work: plain Overloaded.
    with pytest.raises(Overloaded) as anonymous:
        await batcher.submit(7, timeout_s=3.0)
    assert not isinstance(anonymous.value, CallerOverloaded)
    engine.gate.set()
    await asyncio.gather(busy, *flood, polite)
    await batcher.close()
