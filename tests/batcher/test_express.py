"""Express instances: extra instances that only take the work of a caller with nothing
running, so a light caller starts at once beside a flood that holds every other instance.

Each instance waits on its own gate (tests/batcher/engines.py), so which instance runs
what is decided by the batcher alone; the event loop is yielded to with ``sleep(0)``,
which lets dispatch run (no wall-clock waiting).
"""

from __future__ import annotations

import asyncio

import pytest

from batcher import Batcher, BatchPolicy
from tests.batcher.engines import PerInstance

EXPRESS = 2  # instances 0 and 1 take anything; instance 2 is the express one


async def _batcher(engine: PerInstance, **policy) -> Batcher[str, str]:
    batcher: Batcher[str, str] = Batcher(
        engine.factory,
        BatchPolicy(max_batch_size=1, max_queue_delay_s=0, express_instances=1, **policy),
        instances=2,
    )
    await batcher.start()
    return batcher


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_light_caller_starts_on_the_express_instance_while_a_flood_holds_the_rest():
    engine = PerInstance(3)
    batcher = await _batcher(engine)
    flood = [asyncio.ensure_future(batcher.submit(f"f{i}", caller="flood")) for i in range(6)]
    await _settle()
    # The flood runs on the two ordinary instances only; its other four wait.
    assert (batcher.running, batcher.pending) == (2, 4)
    polite = asyncio.ensure_future(batcher.submit("p0", caller="polite"))
    await _settle()
    assert (batcher.running, batcher.pending) == (3, 4)
    engine.gates[EXPRESS].set()
    assert await polite == "p0"
    assert not any(f.done() for f in flood)  # served before any flood item finished
    for gate in engine.gates:
        gate.set()
    assert await asyncio.gather(*flood) == [f"f{i}" for i in range(6)]
    # The flood never ran on the express instance, though it sat idle beside its backlog.
    assert engine.ran[EXPRESS] == [["p0"]]
    await batcher.close()


async def test_a_caller_with_work_running_never_takes_the_express_instance():
    engine = PerInstance(3)
    batcher = await _batcher(engine)
    for gate in engine.gates:
        gate.set()
    results = await asyncio.gather(*(batcher.submit(f"a{i}", caller="alone") for i in range(20)))
    assert results == [f"a{i}" for i in range(20)]
    # The first two started on the ordinary instances (they go first); from then on the
    # caller always had work running, so the idle express instance never took any.
    assert engine.ran[EXPRESS] == []
    assert sorted(i for batch in engine.ran[0] + engine.ran[1] for i in batch) == sorted(results)
    await batcher.close()


async def test_a_caller_is_light_again_once_its_work_finished():
    engine = PerInstance(3)
    batcher = await _batcher(engine)
    flood = [asyncio.ensure_future(batcher.submit(f"f{i}", caller="flood")) for i in range(3)]
    await _settle()
    engine.gates[EXPRESS].set()
    assert await batcher.submit("l0", caller="light") == "l0"
    assert await batcher.submit("l1", caller="light") == "l1"
    assert engine.ran[EXPRESS] == [["l0"], ["l1"]]
    assert not any(f.done() for f in flood)
    for gate in engine.gates:
        gate.set()
    await asyncio.gather(*flood)
    await batcher.close()


async def test_an_express_batch_takes_one_request_per_caller():
    engine = PerInstance(3)
    batcher: Batcher[str, str] = Batcher(
        engine.factory,
        BatchPolicy(max_batch_size=4, max_queue_delay_s=0, express_instances=1),
        instances=2,
    )
    await batcher.start()
    busy = [asyncio.ensure_future(batcher.submit(f"b{i}", caller=f"busy{i}")) for i in range(2)]
    await _settle()
    held = asyncio.ensure_future(batcher.submit("z0", caller="z"))  # holds the express one
    await _settle()
    assert batcher.running == 3
    light = [
        asyncio.ensure_future(batcher.submit(name, caller=name[0]))
        for name in ("x1", "y1", "x2", "y2")
    ]
    await _settle()
    assert batcher.pending == 4
    engine.gates[EXPRESS].set()
    assert await asyncio.gather(held, *light) == ["z0", "x1", "y1", "x2", "y2"]
    # Once "z" finished: one request of each light caller per batch, never two of one.
    assert engine.ran[EXPRESS] == [["z0"], ["x1", "y1"], ["x2", "y2"]]
    assert not any(b.done() for b in busy)
    for gate in engine.gates:
        gate.set()
    await asyncio.gather(*busy)
    await batcher.close()


def test_express_instances_cannot_be_negative():
    with pytest.raises(ValueError, match="express_instances"):
        BatchPolicy(express_instances=-1)
