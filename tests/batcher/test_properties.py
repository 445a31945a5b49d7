"""Property tests of the batcher's guarantees (batcher/core.py docstring lists them).

Each example runs a fresh event loop with real instance threads. A "gate" holds the
instances busy when a scenario needs requests to pile up, and is opened by the test, so no
test waits on wall-clock time for synchronisation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batcher import (
    Batcher,
    BatcherClosed,
    BatchPolicy,
    DeadlineExpired,
    QueueFull,
    RecordingObserver,
)

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class BadItem(ValueError):
    pass


@dataclass
class Engine:
    """A real batch function: doubles numbers; a batch with a negative item fails whole."""

    gate: threading.Event = field(default_factory=threading.Event)
    batches: list[list[int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def factory(self, instance: int) -> Callable[[list[int]], Sequence[int | BaseException]]:
        def run_batch(items: list[int]) -> Sequence[int | BaseException]:
            if self.started is not None and self.loop is not None:
                self.loop.call_soon_threadsafe(self.started.set)
            self.gate.wait(timeout=30)
            with self.lock:
                self.batches.append(list(items))
            if any(x < 0 for x in items):
                raise BadItem(f"negative in {items}")
            return [x * 2 for x in items]

        return run_batch

    @property
    def computed(self) -> list[int]:
        return [x for batch in self.batches for x in batch]


async def start(engine: Engine, policy: BatchPolicy, instances: int = 1) -> Batcher[int, int]:
    engine.loop = asyncio.get_running_loop()
    engine.started = asyncio.Event()
    batcher: Batcher[int, int] = Batcher(engine.factory, policy, instances=instances)
    await batcher.start()
    return batcher


async def hold_instances(
    batcher: Batcher[int, int], engine: Engine, count: int
) -> list[asyncio.Task[int]]:
    """Occupies every instance with a blocker item (values >= 10_000) until the gate opens."""
    blockers = []
    for i in range(count):
        assert engine.started is not None
        engine.started.clear()
        blockers.append(asyncio.create_task(batcher.submit(10_000 + i, priority=100)))
        await engine.started.wait()
    return blockers


policies = st.builds(
    BatchPolicy,
    max_batch_size=st.integers(1, 8),
    max_queue_delay_s=st.sampled_from([0.0, 0.0005, 0.002]),
    max_queue_size=st.integers(1, 64),
    max_batch_cost=st.sampled_from([0.0, 3.0, 10.0]),
    similar_cost_ratio=st.sampled_from([0.0, 0.0, 2.0]),
    priority_aging_s=st.sampled_from([0.01, 1000.0]),
)
requests = st.lists(
    st.tuples(
        st.integers(-3, 1000),  # item; negative = bad input
        st.floats(0.1, 5.0),  # cost
        st.integers(0, 2),  # priority
        st.sampled_from([None, None, 0.0, 1e-4, 5.0]),  # timeout_s
        st.booleans(),  # cancel while waiting
    ),
    max_size=40,
)


@PROPERTY_SETTINGS
@given(policy=policies, reqs=requests, instances=st.integers(1, 3))
def test_every_request_gets_exactly_one_correct_outcome(
    policy: BatchPolicy, reqs: list[tuple[int, float, int, float | None, bool]], instances: int
) -> None:
    async def scenario() -> None:
        engine = Engine()
        batcher = await start(engine, policy, instances)
        blockers = await hold_instances(batcher, engine, instances)
        work = [
            (i if item >= 0 else -(i + 1), cost, priority, timeout, cancel)
            for i, (item, cost, priority, timeout, cancel) in enumerate(reqs)
        ]
        tasks = []
        for item, cost, priority, timeout, _ in work:
            tasks.append(
                asyncio.create_task(
                    batcher.submit(item, cost=cost, priority=priority, timeout_s=timeout)
                )
            )
        await asyncio.sleep(0)  # let every submit run up to its await (no time passes)
        for task, (*_, cancel) in zip(tasks, work, strict=True):
            if cancel:
                task.cancel()
        engine.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*blockers)
        await batcher.close()

        queued = 0
        costs = {}
        for (item, cost, _, timeout, _), outcome in zip(work, outcomes, strict=True):
            if timeout == 0.0:  # already late on arrival: refused before queueing
                assert isinstance(outcome, DeadlineExpired)
                continue
            if queued >= policy.max_queue_size:  # the queue bound is exact
                assert isinstance(outcome, QueueFull), outcome
                continue
            queued += 1
            costs[item] = cost
            if isinstance(outcome, asyncio.CancelledError | DeadlineExpired):
                continue
            if item < 0:
                assert isinstance(outcome, BadItem), outcome
            else:
                assert outcome == item * 2, (item, outcome)
        for batch in engine.batches:
            assert len(batch) <= policy.max_batch_size
            if policy.max_batch_cost and len(batch) > 1:
                assert sum(costs.get(x, 1.0) for x in batch) <= policy.max_batch_cost + 1e-9
            if policy.similar_cost_ratio and len(batch) > 1 and batch[0] < 10_000:
                spread = [costs[x] for x in batch]
                assert max(spread) <= min(spread) * policy.similar_cost_ratio**2 + 1e-9

    asyncio.run(scenario())


@PROPERTY_SETTINGS
@given(policy=policies, reqs=requests)
def test_expired_and_cancelled_requests_are_never_computed(
    policy: BatchPolicy, reqs: list[tuple[int, float, int, float | None, bool]]
) -> None:
    async def scenario() -> None:
        engine = Engine()
        batcher = await start(engine, policy)
        await hold_instances(batcher, engine, 1)
        # distinct items so each request's fate can be traced in what was computed
        tasks = []
        for index, (_, cost, priority, timeout, _) in enumerate(reqs):
            tasks.append(
                asyncio.create_task(
                    batcher.submit(index, cost=cost, priority=priority, timeout_s=timeout)
                )
            )
        await asyncio.sleep(0)
        withdrawn = set()
        for index, (task, (*_, cancel)) in enumerate(zip(tasks, reqs, strict=True)):
            if cancel:
                task.cancel()
                withdrawn.add(index)
        # wait for every short deadline to fire while the instance is still held
        expired = set()
        for index, (task, (*_, timeout, cancel)) in enumerate(zip(tasks, reqs, strict=True)):
            if timeout is not None and timeout < 1 and not cancel:
                with pytest.raises((DeadlineExpired, QueueFull)):
                    await task
                expired.add(index)
        engine.gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        computed = set(engine.computed)
        assert not (computed & withdrawn), "a cancelled request was computed"
        assert not (computed & expired), "an expired request was computed"

    asyncio.run(scenario())


@PROPERTY_SETTINGS
@given(
    priorities=st.lists(st.integers(0, 2), min_size=1, max_size=30),
    max_batch_size=st.integers(1, 5),
)
def test_fifo_within_a_priority_level(priorities: list[int], max_batch_size: int) -> None:
    async def scenario() -> None:
        engine = Engine()
        policy = BatchPolicy(
            max_batch_size=max_batch_size, max_queue_delay_s=0.0, priority_aging_s=1000.0
        )
        batcher = await start(engine, policy)
        await hold_instances(batcher, engine, 1)
        tasks = [
            asyncio.create_task(batcher.submit(i, priority=p)) for i, p in enumerate(priorities)
        ]
        await asyncio.sleep(0)
        engine.gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()
        order = [x for x in engine.computed if x < 10_000]
        for level in set(priorities):
            same = [i for i in order if priorities[i] == level]
            assert same == sorted(same), f"level {level} out of order: {same}"
        # and higher levels first (aging is negligible here)
        assert [priorities[i] for i in order] == sorted(
            (priorities[i] for i in order), reverse=True
        )

    asyncio.run(scenario())


def test_load_grows_batches_and_no_batch_forms_while_instances_are_busy() -> None:
    async def scenario() -> None:
        engine = Engine()
        batcher = await start(engine, BatchPolicy(max_batch_size=8, max_queue_delay_s=0.0))
        await hold_instances(batcher, engine, 1)
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(6)]
        await asyncio.sleep(0)
        assert batcher.pending == 6  # nothing dispatched while the only instance is busy
        engine.gate.set()
        assert await asyncio.gather(*tasks) == [i * 2 for i in range(6)]
        await batcher.close()
        assert engine.batches[1] == list(range(6))  # the waiting six left as one batch

    asyncio.run(scenario())


def test_one_bad_item_fails_only_itself() -> None:
    async def scenario() -> None:
        engine = Engine()
        engine.gate.set()
        observer = RecordingObserver()
        batcher: Batcher[int, int] = Batcher(
            engine.factory, BatchPolicy(max_batch_size=8, max_queue_delay_s=0.05),
            observer=observer,
        )
        engine.loop = asyncio.get_running_loop()
        await batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(x) for x in (1, 2, -1, 3)), return_exceptions=True
        )
        await batcher.close()
        assert results[:2] == [2, 4] and results[3] == 6
        assert isinstance(results[2], BadItem)
        assert observer.items_failed == 1
        assert engine.batches[0] == [1, 2, -1, 3]  # they did share a batch first

    asyncio.run(scenario())


def test_preferred_size_dispatches_without_waiting_for_the_delay() -> None:
    async def scenario() -> None:
        engine = Engine()
        engine.gate.set()
        # a delay far longer than any test: only the preferred size can release the batch
        policy = BatchPolicy(max_batch_size=8, preferred_batch_sizes=(4,), max_queue_delay_s=3600)
        batcher = await start(engine, policy)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
        assert results == [0, 2, 4, 6]
        assert engine.batches == [[0, 1, 2, 3]]
        await batcher.close()

    asyncio.run(scenario())


def test_priority_aging_lets_a_long_waiting_low_priority_request_go_first() -> None:
    async def scenario() -> None:
        engine = Engine()
        policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0.0, priority_aging_s=1.0)
        batcher = await start(engine, policy)
        await hold_instances(batcher, engine, 1)
        low = asyncio.create_task(batcher.submit(1, priority=0))
        highs = [asyncio.create_task(batcher.submit(i, priority=2)) for i in (2, 3)]
        await asyncio.sleep(0)
        # white-box: pretend the low one has waited 3 s (3 levels of aging) - its effective
        # priority 0 + 3 beats 2 + (almost nothing)
        now = asyncio.get_running_loop().time()
        queued = batcher._queues[0][0]
        queued.enqueued_at = now - 3.0
        assert [r.item for r in batcher._in_order(now)] == [1, 2, 3]
        queued.enqueued_at = now  # without the wait, high priority goes first
        assert [r.item for r in batcher._in_order(now)] == [2, 3, 1]
        engine.gate.set()
        await asyncio.gather(low, *highs)
        await batcher.close()

    asyncio.run(scenario())


def test_idle_batcher_arms_no_timer_and_close_refuses_new_work() -> None:
    async def scenario() -> None:
        engine = Engine()
        engine.gate.set()
        batcher = await start(engine, BatchPolicy(max_queue_delay_s=0.01))
        assert await batcher.submit(5) == 10
        assert batcher._wake is None  # event-driven: nothing ticks while idle
        await batcher.close()
        with pytest.raises(BatcherClosed):
            await batcher.submit(1)

    asyncio.run(scenario())


def test_close_finishes_queued_work_without_waiting_for_the_delay() -> None:
    async def scenario() -> None:
        engine = Engine()
        policy = BatchPolicy(max_batch_size=8, max_queue_delay_s=3600)
        batcher = await start(engine, policy)
        engine.gate.set()
        tasks = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.close(grace_s=30)
        assert [t.result() for t in tasks] == [0, 2, 4]

    asyncio.run(scenario())
