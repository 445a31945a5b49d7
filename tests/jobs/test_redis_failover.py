"""A Redis master dies under load and Sentinel replaces it: nothing a client was told is lost.

Real processes on loopback: a master, two replicas and three Sentinels (tests/support/
sentinel.py), two ``speech-worker`` processes (Celery over kombu's sentinel transport), and
the real server (TTS + jobs) whose cache, job store and broker all reach Redis through the
Sentinels with a password read from a file. While one client keeps asking for a cached
synthesis and another keeps submitting synthesis jobs, the master gets SIGKILL.

What must hold:

* every cache request succeeds: misses (served without the shared cache) while the
  master is gone, hits again once the new master serves the keys the old one had;
* submissions resume after the failover (refusals are UNAVAILABLE, retried with the same
  job_id, as the API asks of clients);
* every accepted job ends SUCCEEDED exactly once: its record says it started once, and
  its result is there.

The figures (how long the cache was degraded, how long submission was refused) are
printed; docs/deploy.md quotes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from speech.v1 import jobs_pb2, jobs_pb2_grpc, tts_pb2, tts_pb2_grpc
from speech_jobs.celery_app import make_celery_app
from speech_jobs.ids import scoped_id
from speech_jobs.redis_store import RedisJobStore
from speech_platform.config import Settings
from speech_platform.principals import ANONYMOUS_NAME
from tests.jobs.conftest import jobs_channel, watch_job
from tests.jobs.workers import WorkerProcess, stop_all, worker_env
from tests.support.redis import RedisServerProcess
from tests.support.sentinel import SentinelGroup
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow

PASSWORD = "failover-secret"
VOICE = "en_US-joe-medium"
PROBE_TEXT = "Tell me about a time you recovered from an outage."
#: Jobs accepted before the kill, and in all.
JOBS_BEFORE_KILL = 6
JOBS_IN_ALL = 20


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup(
        password=PASSWORD, replicas=2, sentinels=3, down_after_ms=1000, failover_timeout_ms=3000
    ) as sentinels:
        sentinels.start()
        yield sentinels


@pytest.fixture(scope="module")
def redis_env(group: SentinelGroup, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What server and workers are told about Redis: the Sentinels, and a password file."""
    secret = tmp_path_factory.mktemp("redis-secret") / "password"
    secret.write_text(PASSWORD + "\n")
    return worker_env(
        group.url,
        SPEECH_JOBS__REDIS__PASSWORD_FILE=str(secret),
        SPEECH_CACHE__REDIS__PASSWORD_FILE=str(secret),
        # an answered submit is on a replica too, so the failover cannot lose it
        SPEECH_JOBS__REPLICA_ACKS="1",
        SPEECH_JOBS__REPLICA_ACK_TIMEOUT_MS="1000",
        SPEECH_CACHE__BREAKER_COOLDOWN_S="0.25",
        SPEECH_TTS__PIPER_INSTANCES="1",
    )


def settings_from(env: dict[str, str]) -> Settings:
    settings = server_settings(["tts", "jobs"])
    jobs, cache = settings.jobs, settings.cache
    jobs.backend, jobs.broker_url = "celery", env["SPEECH_JOBS__BROKER_URL"]
    jobs.redis.password_file = env["SPEECH_JOBS__REDIS__PASSWORD_FILE"]
    jobs.replica_acks = int(env["SPEECH_JOBS__REPLICA_ACKS"])
    jobs.replica_ack_timeout_ms = int(env["SPEECH_JOBS__REPLICA_ACK_TIMEOUT_MS"])
    jobs.lease_ttl_s = float(env["SPEECH_JOBS__LEASE_TTL_S"])
    cache.backend, cache.redis_url = "redis", env["SPEECH_CACHE__REDIS_URL"]
    cache.redis.password_file = env["SPEECH_CACHE__REDIS__PASSWORD_FILE"]
    cache.breaker_cooldown_s = float(env["SPEECH_CACHE__BREAKER_COOLDOWN_S"])
    cache.memory_max_bytes = 0  # no local tier: a miss shows the shared cache is out of reach
    settings.tts.engines = ["piper"]
    settings.tts.piper_instances = 1
    return settings


@pytest.fixture(scope="module")
async def server(
    redis_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[RunningServer]:
    settings = settings_from(redis_env)
    app = make_celery_app(settings.jobs)
    log_dir = tmp_path_factory.mktemp("failover-workers")
    workers = [
        WorkerProcess(f"failover{n}", redis_env, log_dir, kinds="synthesis").start()
        for n in range(2)
    ]
    failed_before = request.session.testsfailed
    try:
        await asyncio.gather(*(asyncio.to_thread(w.wait_ready, app) for w in workers))
        async with running_server(settings) as running:
            yield running
    finally:
        await asyncio.to_thread(stop_all, workers)
        app.close()
        if request.session.testsfailed != failed_before:
            for worker in workers:
                print(f"--- {worker.name}\n{worker.log_tail(6000)}")


@dataclass
class Timeline:
    """What the clients saw, in monotonic seconds."""

    cache: list[tuple[float, bool]] = field(default_factory=list)  # (when, cache hit)
    cache_errors: list[str] = field(default_factory=list)
    refusals: list[float] = field(default_factory=list)
    accepted: dict[str, float] = field(default_factory=dict)  # job_id -> when
    submit_latency: list[float] = field(default_factory=list)


async def probe_cache(tts: tts_pb2_grpc.TextToSpeechStub, seen: Timeline, stop: asyncio.Event):
    while not stop.is_set():
        try:
            response = await tts.Synthesize(
                tts_pb2.SynthesizeRequest(text=PROBE_TEXT, voice=VOICE), timeout=30
            )
            seen.cache.append((time.monotonic(), response.cache_hit))
        except grpc.aio.AioRpcError as error:
            seen.cache_errors.append(f"{error.code().name}: {error.details()}")
        await asyncio.sleep(0.05)  # pacing of the load, not a synchronisation


async def submit_jobs(jobs: jobs_pb2_grpc.JobsStub, seen: Timeline):
    """Submits JOBS_IN_ALL jobs one after another, each retried with its own job_id until
    accepted, as a client should."""
    for n in range(JOBS_IN_ALL):
        job_id = f"failover-{n:03d}"
        request = jobs_pb2.SubmitSynthesisJobRequest(
            texts=[f"Answer number {n} is about resilience."], voice=VOICE, job_id=job_id
        )
        while True:
            began = time.monotonic()
            try:
                await jobs.SubmitSynthesisJob(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                seen.refusals.append(time.monotonic())
                await asyncio.sleep(0.1)  # a client's retry back-off
                continue
            seen.accepted[job_id] = time.monotonic()
            seen.submit_latency.append(seen.accepted[job_id] - began)
            break
        await asyncio.sleep(0.1)  # pacing of the load


def cache_entries(server: RedisServerProcess, settings: Settings) -> set[bytes]:
    with server.client() as client:
        return set(client.scan_iter(match=settings.cache.key_prefix + "*", count=1000))


async def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        await asyncio.sleep(0.05)  # bounded polling of the condition


async def test_master_killed_under_load_loses_and_repeats_nothing(
    server: RunningServer, group: SentinelGroup, redis_env: dict[str, str]
):
    settings = settings_from(redis_env)
    seen = Timeline()
    stop = asyncio.Event()
    async with jobs_channel(server.address) as channel, server.channel() as tts_channel:
        jobs = jobs_pb2_grpc.JobsStub(channel)
        tts = tts_pb2_grpc.TextToSpeechStub(tts_channel)
        await tts.Synthesize(tts_pb2.SynthesizeRequest(text=PROBE_TEXT, voice=VOICE))  # cached
        prober = asyncio.create_task(probe_cache(tts, seen, stop))
        submitter = asyncio.create_task(submit_jobs(jobs, seen))
        await wait_until(
            lambda: len(seen.accepted) >= JOBS_BEFORE_KILL and any(h for _, h in seen.cache),
            60, "load under way",
        )
        unfinished = [
            job_id for job_id in list(seen.accepted)
            if (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))).job.state
            in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING)
        ]
        old_master = group.master()
        killed_at = time.monotonic()
        old_master.kill()
        new_master = await asyncio.to_thread(group.wait_for_new_master, old_master, 30.0)
        promoted_at = time.monotonic()
        await asyncio.wait_for(submitter, 90)
        await wait_until(lambda: any(h and t > promoted_at for t, h in seen.cache), 30,
                         "cache hits through the new master")
        stop.set()
        await prober

        # Every accepted job ran to its end exactly once.
        finals = [
            (await watch_job(jobs, job_id, timeout_s=120))[-1] for job_id in seen.accepted
        ]
        store = RedisJobStore.for_settings(settings.jobs)
        try:
            # (no auth here: every job's owner is the anonymous principal)
            records = [
                await store.get(scoped_id(ANONYMOUS_NAME, job_id)) for job_id in seen.accepted
            ]
        finally:
            await store.close()
        # After the failover a fresh entry lands in the new master.
        cached_before = cache_entries(new_master, settings)
        fresh = tts_pb2.SynthesizeRequest(text="Written after the failover.", voice=VOICE)
        assert not (await tts.Synthesize(fresh)).cache_hit
        again = await tts.Synthesize(fresh)
        cached_after = cache_entries(new_master, settings)

    assert unfinished, "every job had ended before the kill: nothing was at risk"
    assert seen.cache_errors == []
    after_kill = [(t, hit) for t, hit in seen.cache if t > killed_at]
    misses = [t for t, hit in after_kill if not hit]
    assert misses, "the cache never noticed the master was gone"
    back_at = min(t for t, hit in after_kill if hit)
    assert again.cache_hit
    assert len(cached_after - cached_before) == 1
    assert len(seen.accepted) == JOBS_IN_ALL
    accepted_after = [t for t in seen.accepted.values() if t > promoted_at]
    assert accepted_after, "no submission was accepted after the failover"
    assert [f.state for f in finals] == [jobs_pb2.JOB_STATE_SUCCEEDED] * JOBS_IN_ALL, [
        (f.job_id, f.error) for f in finals if f.state != jobs_pb2.JOB_STATE_SUCCEEDED
    ]
    assert all(len(f.synthesis.items) == 1 and not f.synthesis.items[0].error for f in finals)
    attempts = {r.job_id: r.attempts for r in records if r is not None}
    assert attempts == {scoped_id(ANONYMOUS_NAME, j): 1 for j in seen.accepted}, attempts

    refused = [t for t in seen.refusals if t > killed_at]
    resumed_at = min(accepted_after)
    print(
        f"\nfailover figures: sentinel promotion {promoted_at - killed_at:.2f} s after the "
        f"kill; cache degraded {back_at - killed_at:.2f} s ({len(misses)} of "
        f"{len(after_kill)} requests after the kill served without it, 0 failed); "
        f"submissions refused {len(refused)} times, "
        f"{(max(refused) - killed_at) if refused else 0.0:.2f} s after the kill at the latest, "
        f"first accepted again {resumed_at - killed_at:.2f} s after the kill; slowest "
        f"accepted submit {max(seen.submit_latency):.2f} s; jobs {JOBS_IN_ALL} accepted "
        f"({len(unfinished)} queued or running at the kill), 0 lost, 0 run twice"
    )

