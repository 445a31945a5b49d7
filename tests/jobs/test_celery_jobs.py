"""Jobs on real Celery workers: a private Redis broker, ``speech-worker`` subprocesses, the
real server (celery backend) in front. Workers are shared by the tests of this module."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest
import redis
from celery import Celery

from speech.v1 import jobs_pb2, jobs_pb2_grpc, tts_pb2, tts_pb2_grpc
from speech_jobs.celery_app import TASK_NAMES, make_celery_app
from speech_jobs.ids import scoped_id
from speech_jobs.records import JobKind, JobRecord, JobState
from speech_jobs.redis_store import RedisJobStore
from speech_platform.config import Settings
from tests.jobs.conftest import (
    FAST_CONFIG,
    TIME_STEP_S,
    assert_monotonic_progress,
    assert_transcript_timing,
    first_update,
    jobs_channel,
    transcript_differences,
    watch_job,
    word_error_rate,
)
from tests.jobs.recordings import Recording
from tests.jobs.workers import WorkerProcess, owner_host, stop_all, worker_env
from tests.support.redis import spawn_redis_server
from tests.support.server import RunningServer, fetch_metrics, histogram_buckets, running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow

#: Seconds of the recording used by the crash and shutdown tests (several batches of windows).
CRASH_AUDIO_S = 150.0


def celery_settings(broker_url: str, services: list[str], **jobs: object) -> Settings:
    """Server settings matching ``worker_env`` (the workers read theirs from env)."""
    settings = server_settings(services)
    env = worker_env(broker_url)
    settings.jobs.backend = "celery"
    settings.jobs.broker_url = broker_url
    settings.jobs.lease_ttl_s = float(env["SPEECH_JOBS__LEASE_TTL_S"])
    settings.cache.backend = "redis"
    settings.cache.redis_url = broker_url
    settings.tts.engines = ["piper"]
    for key, value in jobs.items():
        setattr(settings.jobs, key, value)
    return settings


@pytest.fixture(scope="module")
def worker_logs(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where the workers log: outside pytest's rotating temp dirs, and kept only when a test
    of the module failed (the path is printed then)."""
    directory = Path(tempfile.mkdtemp(prefix="speech-jobs-workers-"))
    failed_before = request.session.testsfailed
    yield directory
    if request.session.testsfailed == failed_before:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"worker logs kept in {directory}")


class WorkerPool:
    """Keeps ``count`` workers running; tests that kill one get a fresh one next time."""

    def __init__(self, app: Celery, env: dict[str, str], log_dir: Path) -> None:
        self.app = app
        self.env = env
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    async def ensure(self, count: int = 2) -> list[WorkerProcess]:
        self.workers = [w for w in self.workers if w.alive]
        fresh = [
            WorkerProcess(
                f"pool{len(self.workers) + i}",
                self.env,
                self.log_dir,
                kinds="transcription,synthesis",
            ).start()
            for i in range(count - len(self.workers))
        ]
        await asyncio.gather(*(asyncio.to_thread(w.wait_ready, self.app) for w in fresh))
        self.workers += fresh
        return self.workers

    def by_owner(self, owner: str) -> WorkerProcess:
        host = owner_host(owner)
        return next(w for w in self.workers if w.name == host)

    def close(self) -> None:
        stop_all(self.workers)


@pytest.fixture(scope="module")
def broker_url() -> Iterator[str]:
    with spawn_redis_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def celery_app(broker_url: str) -> Iterator[Celery]:
    app = make_celery_app(celery_settings(broker_url, ["jobs"]).jobs)
    yield app
    app.close()


@pytest.fixture(scope="module")
async def pool(
    broker_url: str, celery_app: Celery, worker_logs: Path
) -> AsyncIterator[WorkerPool]:
    workers = WorkerPool(celery_app, worker_env(broker_url), worker_logs)
    try:
        await workers.ensure(2)
        yield workers
    finally:
        await asyncio.to_thread(workers.close)


@pytest.fixture(autouse=True)
def worker_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test shows what its workers logged (in its captured teardown output)."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed or "pool" not in request.fixturenames:
        return
    pool: WorkerPool = request.getfixturevalue("pool")
    for worker in pool.workers:
        print(f"--- {worker.name} (alive: {worker.alive})\n{worker.log_tail(8000)}")


@pytest.fixture(scope="module")
async def server(broker_url: str, pool: WorkerPool) -> AsyncIterator[RunningServer]:
    # TTS here checks voices at submit and serves the cached results; no STT is needed.
    async with running_server(celery_settings(broker_url, ["tts", "jobs"])) as running:
        yield running


@pytest.fixture(scope="module")
async def jobs(server: RunningServer) -> AsyncIterator[jobs_pb2_grpc.JobsStub]:
    async with jobs_channel(server.address) as channel:
        yield jobs_pb2_grpc.JobsStub(channel)


@pytest.fixture(scope="module")
async def store(broker_url: str) -> AsyncIterator[RedisJobStore]:
    """Reads job records directly: which worker owns a job, how often it started."""
    settings = celery_settings(broker_url, ["jobs"]).jobs
    job_store = RedisJobStore.from_url(
        broker_url,
        prefix=settings.key_prefix,
        result_ttl_s=settings.result_ttl_s,
        active_ttl_s=3600,
        lease_ttl_s=settings.lease_ttl_s,
    )
    yield job_store
    await job_store.close()


async def submit(jobs: jobs_pb2_grpc.JobsStub, recording: Recording) -> jobs_pb2.Job:
    request = jobs_pb2.SubmitTranscriptionJobRequest(config=FAST_CONFIG, audio=recording.wav)
    return (await jobs.SubmitTranscriptionJob(request)).job


def stored(job: jobs_pb2.Job) -> str:
    """The id the store and the broker know the job by (scoped to its owner)."""
    return scoped_id(job.owner, job.job_id)


async def record_of(store: RedisJobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


@pytest.fixture(scope="module")
async def uninterrupted(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording]
) -> jobs_pb2.Job:
    """The crash recording transcribed by a worker that nobody disturbs."""
    job = await submit(jobs, make_recording(CRASH_AUDIO_S))
    final = (await watch_job(jobs, job.job_id))[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    return final


def same_as_uninterrupted(final: jobs_pb2.Job, uninterrupted: jobs_pb2.Job) -> bool:
    differences = transcript_differences(
        final.transcription, uninterrupted.transcription, time_tolerance_s=TIME_STEP_S
    )
    assert not differences, differences[:5]
    return True


def running_with_progress(job: jobs_pb2.Job) -> bool:
    return job.state == jobs_pb2.JOB_STATE_RUNNING and 0.0 < job.progress < 1.0


async def test_ten_minute_recording_is_transcribed_as_a_job(
    jobs: jobs_pb2_grpc.JobsStub,
    pool: WorkerPool,
    make_recording: Callable[[float], Recording],
):
    recording = make_recording(600.0)
    job = await submit(jobs, recording)
    updates = await watch_job(jobs, job.job_id, timeout_s=900)
    final = updates[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    assert_monotonic_progress(updates)
    steps = {round(u.progress, 4) for u in updates if 0.0 < u.progress < 1.0}
    assert len(steps) >= 5, f"progress should rise window batch by window batch: {sorted(steps)}"
    result = final.transcription
    assert result.audio_duration_seconds == pytest.approx(600.0, abs=0.01)
    assert_transcript_timing(result, recording.duration_s)
    assert word_error_rate(recording.reference, result.text) < 0.05
    # Absolute times: every segment lies over one of the clips placed in the recording
    # (a window offset added wrongly would put segments into pauses or the wrong clip).
    for segment in result.segments:
        middle = (segment.start_seconds + segment.end_seconds) / 2
        assert any(start - 1.0 <= middle <= end + 1.0 for start, end in recording.spans), (
            segment
        )
    covered = sum(
        any(s.start_seconds <= end and s.end_seconds >= start for s in result.segments)
        for start, end in recording.spans
    )
    assert covered == len(recording.spans)
    assert result.words and result.words[-1].end_seconds > 590.0
    # The worker packed windows of this one recording into shared batches (max_batch_size
    # is 2 here), on the same batcher code the server uses.
    batches_of_two = 0.0
    for worker in pool.workers:
        text = await asyncio.to_thread(fetch_metrics, worker.metrics_port)
        buckets = histogram_buckets(text, "speech_batcher_batch_size", model="whisper-tiny.en")
        batches_of_two += buckets.get(2.0, 0.0) - buckets.get(1.0, 0.0)
    assert batches_of_two >= 5


async def test_a_job_survives_its_worker_being_killed(
    jobs: jobs_pb2_grpc.JobsStub,
    pool: WorkerPool,
    store: RedisJobStore,
    broker_url: str,
    uninterrupted: jobs_pb2.Job,
    make_recording: Callable[[float], Recording],
):
    await pool.ensure(2)
    job = await submit(jobs, make_recording(CRASH_AUDIO_S))
    watcher = asyncio.create_task(watch_job(jobs, job.job_id, timeout_s=600))
    await first_update(jobs, job.job_id, running_with_progress)
    victim = pool.by_owner((await record_of(store, stored(job))).owner)
    await asyncio.to_thread(victim.kill)
    updates = await watcher
    final = updates[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    assert_monotonic_progress(updates)
    record = await record_of(store, stored(job))
    assert record.attempts == 2
    assert same_as_uninterrupted(final, uninterrupted)
    # A surviving worker's sweep put it back in the queue once the dead one's lease lapsed.
    sweeps = "".join(w.log_tail(10**6) for w in pool.workers if w.alive)
    swept = f'stopped renewing its lease", "job_id": "{stored(job)}"'
    assert swept in sweeps
    # The dead worker's delivery is still unacknowledged in the broker (Redis re-delivers it
    # only after the visibility timeout, when the job is final and it is dropped).
    client = redis.Redis.from_url(broker_url)
    try:
        unacked = [json.loads(v) for v in client.hvals("unacked")]
    finally:
        client.close()
    assert stored(job) in [message[0]["headers"]["id"] for message in unacked]


async def test_sigterm_gives_the_running_job_back_to_the_queue(
    jobs: jobs_pb2_grpc.JobsStub,
    pool: WorkerPool,
    store: RedisJobStore,
    uninterrupted: jobs_pb2.Job,
    make_recording: Callable[[float], Recording],
):
    await pool.ensure(2)
    job = await submit(jobs, make_recording(CRASH_AUDIO_S))
    watcher = asyncio.create_task(watch_job(jobs, job.job_id, timeout_s=600))
    await first_update(jobs, job.job_id, running_with_progress)
    leaving = pool.by_owner((await record_of(store, stored(job))).owner)
    leaving.terminate()  # worker_drain_s is 0: the job goes back at the next window
    assert await asyncio.to_thread(leaving.wait_exit) == 0
    requeued = await record_of(store, stored(job))
    assert requeued.state in (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)
    assert owner_host(requeued.owner) != leaving.name
    updates = await watcher
    final = updates[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    assert same_as_uninterrupted(final, uninterrupted)
    assert (await record_of(store, stored(job))).attempts == 2
    assert_monotonic_progress(updates)
    assert "job given back to the queue" in leaving.log_tail(20000)


async def test_sigterm_with_drain_time_finishes_the_job_first(
    broker_url: str,
    celery_app: Celery,
    store: RedisJobStore,
    uninterrupted: jobs_pb2.Job,
    make_recording: Callable[[float], Recording],
    worker_logs: Path,
):
    # Its own queue, so this worker (and only it) gets the job.
    queue = "speech-test-drain"
    env = worker_env(
        broker_url, SPEECH_JOBS__WORKER_DRAIN_S="600", SPEECH_JOBS__TRANSCRIPTION_QUEUE=queue
    )
    worker = WorkerProcess("drain", env, worker_logs).start()
    try:
        await asyncio.to_thread(worker.wait_ready, celery_app)
        settings = celery_settings(broker_url, ["jobs"], transcription_queue=queue)
        async with (
            running_server(settings) as drain_server,
            jobs_channel(drain_server.address) as channel,
        ):
            stub = jobs_pb2_grpc.JobsStub(channel)
            job = await submit(stub, make_recording(CRASH_AUDIO_S))
            watcher = asyncio.create_task(watch_job(stub, job.job_id, timeout_s=600))
            await first_update(stub, job.job_id, running_with_progress)
            worker.terminate()
            updates = await watcher
            assert await asyncio.to_thread(worker.wait_exit, 60) == 0
        final = updates[-1]
        assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
        assert same_as_uninterrupted(final, uninterrupted)
        assert (await record_of(store, stored(job))).attempts == 1
        assert jobs_pb2.JOB_STATE_QUEUED not in [u.state for u in updates[1:]]
    finally:
        await asyncio.to_thread(worker.stop)


async def test_cancel_running_and_queued_jobs(
    jobs: jobs_pb2_grpc.JobsStub,
    pool: WorkerPool,
    store: RedisJobStore,
    broker_url: str,
    make_recording: Callable[[float], Recording],
):
    workers = await pool.ensure(2)
    recording = make_recording(240.0)
    first, second, third = [await submit(jobs, recording) for _ in range(3)]
    # Two workers, one job each: the third waits in the queue.
    for job in (first, second):
        await first_update(jobs, job.job_id, running_with_progress)
    queued = (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=third.job_id))).job
    assert queued.state == jobs_pb2.JOB_STATE_QUEUED
    for job in (third, first, second):
        cancelled = (await jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.job_id))).job
        assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
    for job in (first, second):
        final = (await watch_job(jobs, job.job_id))[-1]
        assert final.state == jobs_pb2.JOB_STATE_CANCELLED and final.progress < 1.0
    # Both workers stop their jobs between windows and are free again.
    for worker in workers:
        await asyncio.to_thread(worker.wait_ready, pool.app, 120.0)
    client = redis.Redis.from_url(broker_url)
    try:
        queue = celery_settings(broker_url, ["jobs"]).jobs.transcription_queue
        assert client.llen(queue) == 0  # the revoked message was taken and dropped
    finally:
        client.close()
    record = await record_of(store, stored(third))
    assert record.state is JobState.CANCELLED and record.attempts == 0


async def test_broker_message_carries_only_the_job_id(
    broker_url: str, store: RedisJobStore, make_recording: Callable[[float], Recording]
):
    queue = "speech-test-nobody-consumes"
    settings = celery_settings(broker_url, ["jobs"], transcription_queue=queue)
    recording = make_recording(150.0)
    async with (
        running_server(settings) as lone_server,
        jobs_channel(lone_server.address) as channel,
    ):
        job = await submit(jobs_pb2_grpc.JobsStub(channel), recording)
    client = redis.Redis.from_url(broker_url)
    try:
        messages = client.lrange(queue, 0, -1)  # the list KEDA's redis scaler watches
        assert len(messages) == 1
        assert len(messages[0]) < 4096 < len(recording.wav)
        envelope = json.loads(messages[0])
        assert envelope["headers"]["id"] == stored(job)
        audio_key = f"{settings.jobs.key_prefix}audio:{stored(job)}"
        assert client.get(audio_key) == recording.wav
        longest = settings.jobs.visibility_timeout_s + settings.jobs.result_ttl_s
        assert 0 < client.ttl(audio_key) <= longest
    finally:
        client.delete(queue)
        client.close()
    assert (await record_of(store, stored(job))).state is JobState.QUEUED


async def test_bad_input_on_the_celery_backend(jobs: jobs_pb2_grpc.JobsStub):
    with pytest.raises(grpc.aio.AioRpcError) as no_audio:
        await jobs.SubmitTranscriptionJob(jobs_pb2.SubmitTranscriptionJobRequest())
    assert no_audio.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await jobs.GetJob(jobs_pb2.GetJobRequest(job_id="never-submitted"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id="../../etc/passwd"))
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bulk_synthesis_of_fifty_texts_lands_in_the_shared_cache(
    server: RunningServer,
    jobs: jobs_pb2_grpc.JobsStub,
    pool: WorkerPool,
    broker_url: str,
):
    await pool.ensure(2)
    subjects = ["teamwork", "deadlines", "testing", "code review", "on-call duty"]
    texts = [
        f"Question {n + 1}: how do you approach {subjects[n % 5]} in a team of {n + 2}?"
        for n in range(50)
    ]
    submitted = await jobs.SubmitSynthesisJob(
        jobs_pb2.SubmitSynthesisJobRequest(
            texts=texts, voice="en_US-joe-medium", include_audio=True
        )
    )
    updates = await watch_job(jobs, submitted.job.job_id)
    assert_monotonic_progress(updates)
    assert len({u.progress for u in updates}) > 5
    final = updates[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    items = final.synthesis.items
    assert [item.text for item in items] == texts
    assert all(not item.error and item.audio[:4] == b"RIFF" for item in items)
    # Every text is in Redis under the key the job reports, written by a worker process...
    client = redis.Redis.from_url(broker_url)
    try:
        prefix = celery_settings(broker_url, ["tts"]).cache.key_prefix
        for item in items:
            stored = client.get(prefix + item.cache_key)
            assert isinstance(stored, bytes), item.text
            assert tts_pb2.SynthesizeResponse.FromString(stored).audio == item.audio
    finally:
        client.close()
    # ...so the server answers the same texts from the cache, with the same audio.
    async with server.channel() as channel:
        tts = tts_pb2_grpc.TextToSpeechStub(channel)
        for item in items[::10]:
            response = await tts.Synthesize(
                tts_pb2.SynthesizeRequest(text=item.text, voice="en_US-joe-medium")
            )
            assert response.cache_hit and response.audio == item.audio


async def test_unknown_voice_is_refused_before_a_job_exists(jobs: jobs_pb2_grpc.JobsStub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.SubmitSynthesisJob(
            jobs_pb2.SubmitSynthesisJobRequest(texts=["hello"], voice="de_DE-nobody")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "de_DE-nobody" in caught.value.details()
    before = await jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=1000))
    with pytest.raises(grpc.aio.AioRpcError):
        await jobs.SubmitSynthesisJob(
            jobs_pb2.SubmitSynthesisJobRequest(texts=["hello"], voice="de_DE-nobody")
        )
    after = await jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=1000))
    assert len(after.jobs) == len(before.jobs)


async def test_a_redelivered_job_does_not_run_twice(
    jobs: jobs_pb2_grpc.JobsStub,
    pool: WorkerPool,
    store: RedisJobStore,
    celery_app: Celery,
    broker_url: str,
    make_recording: Callable[[float], Recording],
):
    """The broker may deliver a job twice (a re-publish, a late re-delivery): the second
    delivery, while the job runs or after it ended, must change nothing."""
    await pool.ensure(2)
    settings = celery_settings(broker_url, ["jobs"]).jobs

    async def deliver_again(job_id: str) -> object:
        """Sends the job's message once more and returns what the task said about it.

        The copy carries its own Celery task id only so that its result can be told apart
        from the original delivery's; the job id in it is the same."""
        copy = celery_app.send_task(
            TASK_NAMES[JobKind.TRANSCRIPTION],
            kwargs={"job_id": job_id},
            queue=settings.transcription_queue,
            task_id=f"{job_id}-copy-{uuid.uuid4().hex[:6]}",
        )
        return await asyncio.to_thread(copy.get, timeout=120)

    job = await submit(jobs, make_recording(240.0))
    await first_update(jobs, job.job_id, running_with_progress)
    # The idle worker receives the duplicate while the owner still runs the job.
    assert await deliver_again(stored(job)) == {"job_id": stored(job), "outcome": "skipped"}
    final = (await watch_job(jobs, job.job_id))[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    ended = await record_of(store, stored(job))
    assert ended.attempts == 1
    assert await deliver_again(stored(job)) == {"job_id": stored(job), "outcome": "skipped"}
    assert await record_of(store, stored(job)) == ended
    again = (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.job_id))).job
    assert again.transcription == final.transcription
