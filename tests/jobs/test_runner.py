"""JobRunner decisions that need no engine: poison jobs, missing engines, duplicates."""

from __future__ import annotations

import time

from speech.v1 import jobs_pb2
from speech_jobs.records import JobKind, JobRecord, JobState
from speech_jobs.runner import MAX_ATTEMPTS, JobEngines, JobRunner, RunOutcome
from speech_jobs.store import MemoryJobStore
from speech_platform.config import JobsSettings


async def queued(store: MemoryJobStore, job_id: str, kind: JobKind, spec: bytes) -> None:
    now = time.time()
    await store.create(JobRecord(job_id, kind, JobState.QUEUED, 0.0, "", now, now), spec, b"x")


async def test_a_job_that_keeps_losing_its_worker_is_failed_not_retried_forever():
    store = MemoryJobStore(ttl_s=60)
    await queued(store, "poison", JobKind.TRANSCRIPTION, b"")
    for attempt in range(MAX_ATTEMPTS):
        await store.start("poison", f"worker-{attempt}")
        assert await store.requeue("poison", f"worker-{attempt}")  # as the sweep does
    runner = JobRunner(store, JobEngines(), JobsSettings(), owner="last")
    assert await runner.run("poison") is RunOutcome.FINISHED
    record = await store.get("poison")
    assert record is not None and record.state is JobState.FAILED
    assert f"gave up after {MAX_ATTEMPTS} attempts" in record.error


async def test_a_worker_without_the_engine_fails_the_job_with_the_reason():
    store = MemoryJobStore(ttl_s=60)
    spec = jobs_pb2.SubmitSynthesisJobRequest(texts=["hello"]).SerializeToString()
    await queued(store, "tts", JobKind.SYNTHESIS, spec)
    runner = JobRunner(store, JobEngines(), JobsSettings(), owner="stt-only")
    assert await runner.run("tts") is RunOutcome.FINISHED
    record = await store.get("tts")
    assert record is not None and record.state is JobState.FAILED
    assert "no text-to-speech engine" in record.error


async def test_a_job_running_elsewhere_or_already_final_is_not_run_again():
    store = MemoryJobStore(ttl_s=60)
    await queued(store, "busy", JobKind.TRANSCRIPTION, b"")
    await store.start("busy", "other-worker")
    runner = JobRunner(store, JobEngines(), JobsSettings(), owner="me")
    assert await runner.run("busy") is RunOutcome.SKIPPED
    busy = await store.get("busy")
    assert busy is not None and busy.owner == "other-worker"
    await store.cancel("busy")
    assert await runner.run("busy") is RunOutcome.SKIPPED
    assert await runner.run("never-submitted") is RunOutcome.SKIPPED
