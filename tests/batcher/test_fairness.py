"""Fair queuing between callers: a flood waits behind everyone else's next request.

The learnt rate is seeded (one second of compute per unit of cost) and a gate holds the
only instance busy while the queue forms, so the order checked is exact.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batcher import Batcher, BatchPolicy
from tests.batcher.engines import Metered


def _engine(gate: threading.Event, order: list[str]):
    def factory(instance: int):
        def run_batch(items: list[str]) -> list[str]:
            gate.wait(timeout=30)
            order.extend(items)
            return items

        return run_batch

    return factory


async def _order_of(submissions: list[tuple[str, str | None]]) -> list[str]:
    """The order in which one busy instance serves ``(item, caller)`` submitted at once."""
    gate, order = threading.Event(), list[str]()
    batcher: Batcher[str, str] = Batcher(
        _engine(gate, order), BatchPolicy(max_batch_size=1, max_queue_delay_s=0)
    )
    await batcher.start()
    batcher._rate.observe(cost=1.0, seconds=1.0)
    first = asyncio.ensure_future(batcher.submit("busy"))
    async with asyncio.timeout(10):
        while batcher.running < 1:  # noqa: ASYNC110 - the batcher has no event for this
            await asyncio.sleep(0)
    tasks = [asyncio.ensure_future(batcher.submit(i, caller=c)) for i, c in submissions]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *tasks)
    await batcher.close()
    return order[1:]


async def test_a_polite_request_goes_ahead_of_a_flood_that_came_first():
    flood = [(f"flood-{k}", "flooder") for k in range(20)]
    order = await _order_of([*flood, ("polite", "polite")])
    # The flooder's first request started its share; the polite one is next, not 21st.
    assert order[:3] == ["flood-0", "polite", "flood-1"]
    assert order[2:] == [f"flood-{k}" for k in range(1, 20)]


async def test_two_floods_are_served_in_turns():
    a = [(f"a{k}", "a") for k in range(5)]
    b = [(f"b{k}", "b") for k in range(5)]
    order = await _order_of([*a, *b])
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4"]


async def test_without_callers_the_order_is_arrival():
    items = [(f"r{k}", None) for k in range(8)]
    assert await _order_of(items) == [i for i, _ in items]


async def test_the_queue_share_shows_how_far_one_caller_dominates_the_queue():
    gate, order = threading.Event(), list[str]()
    batcher: Batcher[str, str] = Batcher(
        _engine(gate, order), BatchPolicy(max_batch_size=1, max_queue_delay_s=0)
    )
    await batcher.start()
    assert batcher.queue_share() == (0, 0.0)
    first = asyncio.ensure_future(batcher.submit("busy", caller="a"))
    async with asyncio.timeout(10):
        while batcher.running < 1:  # noqa: ASYNC110 - the batcher has no event for this
            await asyncio.sleep(0)
    tasks = [asyncio.ensure_future(batcher.submit(f"a{k}", caller="a")) for k in range(6)]
    tasks += [asyncio.ensure_future(batcher.submit("b0", caller="b", cost=2.0))]
    await asyncio.sleep(0)
    # Waiting: six of cost 1 from "a", one of cost 2 from "b"; the running one not counted.
    callers, top = batcher.queue_share()
    assert (callers, round(top, 3)) == (2, 0.75)
    tasks[0].cancel()  # a withdrawn request leaves the share too
    await asyncio.sleep(0)
    assert round(batcher.queue_share()[1], 3) == round(5 / 7, 3)
    gate.set()
    await asyncio.gather(first, *tasks[1:])
    assert batcher.queue_share() == (0, 0.0)
    await batcher.close()


async def test_a_flood_that_has_waited_does_not_age_past_a_new_caller():
    """Only a request whose fair turn has come ages: the flood's backlog, whose fair starts
    lie ahead in virtual time, gains no level over a polite caller who just arrived."""
    gate, order = threading.Event(), list[str]()
    policy = BatchPolicy(max_batch_size=1, max_queue_delay_s=0, priority_aging_s=1.0)
    batcher: Batcher[str, str] = Batcher(_engine(gate, order), policy)
    await batcher.start()
    batcher._rate.observe(cost=1.0, seconds=1.0)
    first = asyncio.ensure_future(batcher.submit("busy"))
    async with asyncio.timeout(10):
        while batcher.running < 1:  # noqa: ASYNC110 - the batcher has no event for this
            await asyncio.sleep(0)
    flood = [asyncio.ensure_future(batcher.submit(f"f{k}", caller="flood")) for k in range(5)]
    await asyncio.sleep(0)
    now = asyncio.get_running_loop().time()
    for request in batcher._queues[0]:  # white-box: the flood arrived 3 s ago
        request.enqueued_at -= 3.0
    # Admission sees what fair queuing will do: ahead of a new caller is the flood's one
    # request whose fair start has come (f0), not the whole flood.
    assert batcher._ahead_cost(0, "polite") == pytest.approx(1.0)
    assert batcher._ahead_cost(0, None) == pytest.approx(5.0)
    polite = asyncio.ensure_future(batcher.submit("polite", caller="polite"))
    await asyncio.sleep(0)
    # Waiting 3 s aged f0 alone (its turn had come); the rest of the flood's turns lie
    # ahead, so the polite caller comes second, not sixth.
    assert [r.item for r in batcher._in_order(now)] == ["f0", "polite", "f1", "f2", "f3", "f4"]
    gate.set()
    await asyncio.gather(first, *flood, polite)
    await batcher.close()


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 3), st.floats(0.5, 4.0)),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.integers(0, 29), max_size=8),
    st.integers(0, 5),
)
@settings(max_examples=40, deadline=None)
def test_the_work_counted_ahead_of_an_arrival_is_the_queue_walked_in_fair_order(
    arrivals, withdrawn, dispatched
):
    """Admission sums what is ahead from running totals when it can; that must always
    equal walking the queue: queued work at the arrival's level or above whose fair start
    is not after the arrival's. The virtual time likewise."""

    async def scenario() -> None:
        engine = Metered()
        batcher: Batcher[int, int] = Batcher(
            engine.factory, BatchPolicy(max_batch_size=1, max_queue_delay_s=0, admission=False)
        )
        await batcher.start()
        batcher._rate.observe(cost=1.0, seconds=1.0)
        tasks = [
            asyncio.ensure_future(batcher.submit(i, cost=cost, priority=level, caller=caller))
            for i, (caller, level, cost) in enumerate(arrivals)
        ]
        await asyncio.sleep(0)
        for index in withdrawn:
            if index < len(tasks):
                tasks[index].cancel()
        for _ in range(dispatched):
            engine.permits.release()
        await asyncio.sleep(0)
        queued = [r for queue in batcher._queues.values() for r in queue]
        # The virtual time kept in a heap (requests that left are dropped when they reach
        # its top) is the one a walk of the queue finds.
        earliest = min((r.fair_at for r in queued), default=batcher._dispatched_at)
        assert batcher._virtual_now() == min(earliest, batcher._dispatched_at)
        for caller in "abcd":
            for level in range(4):
                now = batcher._virtual_now()
                start = max(now, batcher._caller_clock.get(caller, now))
                walked = sum(r.cost for r in queued if r.priority >= level and r.fair_at <= start)
                assert batcher._ahead_cost(level, caller) == pytest.approx(walked, abs=1e-9)
        for task in tasks:
            task.cancel()
        for _ in range(len(arrivals)):
            engine.permits.release()
        await batcher.close(0)

    asyncio.run(scenario())
