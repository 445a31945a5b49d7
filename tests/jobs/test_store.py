"""The job state machine, the same contract on both stores (memory, and a real Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from speech_jobs.records import JobKind, JobRecord, JobState
from speech_jobs.redis_store import RedisJobStore
from speech_jobs.store import JobStore, MemoryJobStore, StartDecision
from speech_platform.errors import ResourceExhausted


def must(record: JobRecord | None) -> JobRecord:
    assert record is not None
    return record


def new_record(job_id: str, kind: JobKind = JobKind.TRANSCRIPTION, at: float | None = None):
    now = time.time() if at is None else at
    return JobRecord(job_id, kind, JobState.QUEUED, 0.0, "", now, now)


@pytest.fixture(params=["memory", "redis"])
async def store(request, redis_url: str, redis_key_prefix: str) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        memory = MemoryJobStore(ttl_s=3600)
        yield memory
        await memory.close()
        return
    redis_store = RedisJobStore.from_url(
        redis_url,
        prefix=redis_key_prefix,
        result_ttl_s=3600,
        active_ttl_s=7200,
        lease_ttl_s=30.0,
    )
    yield redis_store
    await redis_store.close()


async def test_create_is_idempotent_by_job_id(store: JobStore):
    first, created = await store.create(new_record("a"), b"spec-1", b"audio-1")
    again, created_again = await store.create(new_record("a"), b"spec-2", b"audio-2")
    assert created and not created_again
    assert first.state is JobState.QUEUED and again == first
    assert await store.spec("a") == b"spec-1"
    assert await store.audio("a") == b"audio-1"


async def test_exactly_one_of_many_concurrent_starts_runs(store: JobStore):
    await store.create(new_record("race"), b"spec")
    starts = await asyncio.gather(*(store.start("race", f"worker-{i}") for i in range(20)))
    decisions = [s.decision for s in starts]
    assert decisions.count(StartDecision.RUN) == 1
    assert decisions.count(StartDecision.DUPLICATE) == 19
    winner = next(s.record for s in starts if s.decision is StartDecision.RUN)
    assert winner is not None and winner.state is JobState.RUNNING and winner.attempts == 1


async def test_progress_only_rises_and_only_for_the_owner(store: JobStore):
    await store.create(new_record("p"), b"spec")
    await store.start("p", "owner")
    assert must(await store.progress("p", "owner", 0.4)).progress == pytest.approx(0.4)
    assert must(await store.progress("p", "owner", 0.2)).progress == pytest.approx(0.4)
    assert must(await store.progress("p", "intruder", 0.9)).progress == pytest.approx(0.4)
    assert must(await store.progress("p", "owner", 0.7)).progress == pytest.approx(0.7)


async def test_finish_by_owner_stores_result_and_drops_audio(store: JobStore):
    await store.create(new_record("f"), b"spec", b"audio")
    await store.start("f", "owner")
    refused = await store.finish("f", "intruder", JobState.SUCCEEDED, result=b"forged")
    assert refused is not None and refused.state is JobState.RUNNING
    final = await store.finish("f", "owner", JobState.SUCCEEDED, result=b"result")
    assert final is not None and final.state is JobState.SUCCEEDED and final.progress == 1.0
    assert await store.result("f") == b"result"
    assert await store.audio("f") is None
    # A re-delivery of the finished job does nothing.
    assert (await store.start("f", "late")).decision is StartDecision.FINISHED
    with pytest.raises(ValueError):
        await store.finish("f", "owner", JobState.RUNNING)


async def test_failure_keeps_progress_and_error(store: JobStore):
    await store.create(new_record("x"), b"spec")
    await store.start("x", "owner")
    await store.progress("x", "owner", 0.3)
    final = await store.finish("x", "owner", JobState.FAILED, error="audio could not be decoded")
    assert final is not None and final.state is JobState.FAILED
    assert final.error == "audio could not be decoded" and final.progress == pytest.approx(0.3)


async def test_cancel_queued_and_running_jobs(store: JobStore):
    await store.create(new_record("q"), b"spec", b"audio")
    cancelled = await store.cancel("q")
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert (await store.start("q", "worker")).decision is StartDecision.FINISHED
    assert await store.audio("q") is None

    await store.create(new_record("r"), b"spec")
    await store.start("r", "worker")
    await store.cancel("r")
    seen_by_owner = await store.progress("r", "worker", 0.5)
    assert seen_by_owner is not None and seen_by_owner.state is JobState.CANCELLED
    late = await store.finish("r", "worker", JobState.SUCCEEDED, result=b"too late")
    assert late is not None and late.state is JobState.CANCELLED
    assert await store.result("r") is None
    # Cancelling a final job leaves it as it is; an unknown id is None.
    assert must(await store.cancel("r")).state is JobState.CANCELLED
    assert await store.cancel("nope") is None


async def test_requeue_keeps_progress_and_counts_attempts(store: JobStore):
    await store.create(new_record("d"), b"spec")
    await store.start("d", "first")
    await store.progress("d", "first", 0.5)
    assert not await store.requeue("d", "someone-else")
    assert await store.requeue("d", "first")
    queued = await store.get("d")
    assert queued is not None and queued.state is JobState.QUEUED and queued.owner == ""
    assert queued.progress == pytest.approx(0.5)
    again = await store.start("d", "second")
    assert again.decision is StartDecision.RUN and must(again.record).attempts == 2


async def test_watch_delivers_each_change_in_order_and_ends(store: JobStore):
    await store.create(new_record("w"), b"spec")
    seen: asyncio.Queue[JobRecord] = asyncio.Queue()

    async def watch() -> None:
        async for record in store.watch("w"):
            seen.put_nowait(record)

    async def delivered(changed: JobRecord | None) -> JobRecord:
        """The watcher's next record; it must be the change just made."""
        assert changed is not None
        record = await asyncio.wait_for(seen.get(), 10)
        assert record.version == changed.version
        return record

    watcher = asyncio.create_task(watch())
    assert (await asyncio.wait_for(seen.get(), 10)).state is JobState.QUEUED
    running = await delivered((await store.start("w", "owner")).record)
    assert running.state is JobState.RUNNING and running.owner == "owner"
    for fraction in (0.25, 0.5, 0.75):
        record = await delivered(await store.progress("w", "owner", fraction))
        assert record.progress == pytest.approx(fraction)
    final = await delivered(await store.finish("w", "owner", JobState.SUCCEEDED, result=b"r"))
    assert final.state is JobState.SUCCEEDED
    await asyncio.wait_for(watcher, 10)  # the stream ends after the final state
    assert seen.empty()


async def test_a_slow_watcher_skips_to_the_latest_state(store: JobStore):
    await store.create(new_record("s"), b"spec")
    stream = store.watch("s")
    first = await anext(stream)
    await store.start("s", "owner")
    for fraction in (0.1, 0.2, 0.3):
        await store.progress("s", "owner", fraction)
    latest = await asyncio.wait_for(anext(stream), 10)
    await stream.aclose()
    assert first.state is JobState.QUEUED
    assert latest.state is JobState.RUNNING and latest.progress == pytest.approx(0.3)


async def test_watch_of_unknown_job_yields_nothing(store: JobStore):
    assert [r async for r in store.watch("missing")] == []


async def test_list_is_newest_first_and_filters_by_state(store: JobStore):
    base = time.time()
    for i in range(5):
        await store.create(new_record(f"l{i}", at=base + i), b"spec")
    await store.start("l3", "owner")
    newest = await store.list_jobs(3)
    assert [r.job_id for r in newest] == ["l4", "l3", "l2"]
    running = await store.list_jobs(10, JobState.RUNNING)
    assert [r.job_id for r in running] == ["l3"]


async def test_redis_reclaims_a_job_only_after_its_lease_lapses(
    redis_url: str, redis_key_prefix: str
):
    store = RedisJobStore.from_url(
        redis_url, prefix=redis_key_prefix, result_ttl_s=60, active_ttl_s=120, lease_ttl_s=1.0
    )
    try:
        await store.create(new_record("o"), b"spec")
        await store.start("o", "doomed-worker")
        assert await store.reclaim_orphans() == []  # the lease is fresh
        deadline = time.monotonic() + 10
        reclaimed: list[JobRecord] = []
        while not reclaimed and time.monotonic() < deadline:
            reclaimed = await store.reclaim_orphans()  # the condition: the lease has lapsed
            if not reclaimed:
                await asyncio.sleep(0.1)
        assert [r.job_id for r in reclaimed] == ["o"]
        assert reclaimed[0].state is JobState.QUEUED
        # The dead owner's late reports are refused; a new owner runs it.
        assert must(await store.progress("o", "doomed-worker", 0.9)).progress == 0.0
        assert (await store.start("o", "rescuer")).decision is StartDecision.RUN
        assert await store.reclaim_orphans() == []
    finally:
        await store.close()


async def test_the_in_process_store_caps_the_audio_its_queued_jobs_hold():
    store = MemoryJobStore(ttl_s=3600, max_audio_bytes=1000)
    await store.create(new_record("a"), b"spec", bytes(600))
    with pytest.raises(ResourceExhausted, match=r"jobs\.max_queued_audio_mb"):
        await store.create(new_record("b"), b"spec", bytes(600))
    assert await store.get("b") is None  # nothing of the refused job is kept
    # Once the first job has run its audio is dropped, and the next one fits.
    await store.start("a", "worker")
    await store.finish("a", "worker", JobState.SUCCEEDED, result=b"done")
    created, fresh = await store.create(new_record("b"), b"spec", bytes(600))
    assert fresh and created.state is JobState.QUEUED
    await store.close()
