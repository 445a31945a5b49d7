"""The celery backend's server when its Redis dies and comes back: clear UNAVAILABLE while it
is gone (never UNKNOWN or INTERNAL), and service again without a restart afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import redis

from speech.v1 import jobs_pb2, jobs_pb2_grpc
from speech_platform.config import Settings
from tests.jobs.conftest import jobs_channel, watch_job
from tests.support.redis import RedisServerProcess, free_port, spawn_redis_server
from tests.support.server import running_server
from tests.support.server import test_settings as server_settings


def jobs_only_settings(broker_url: str) -> Settings:
    settings = server_settings(["jobs"])
    settings.jobs.backend = "celery"
    settings.jobs.broker_url = broker_url
    # Nobody consumes this queue: the test is about the server, not workers.
    settings.jobs.synthesis_queue = "speech-test-outage"
    # Calls ride out a short drop (a failover: tests/jobs/test_redis_failover.py) for this
    # long, then fail UNAVAILABLE; an outage that outlasts it is what this test is about.
    settings.jobs.redis_retry_s = 0.5
    return settings


@pytest.fixture
def redis_server() -> Iterator[RedisServerProcess]:
    with spawn_redis_server() as server:
        yield server


@pytest.fixture
async def jobs(redis_server: RedisServerProcess) -> AsyncIterator[jobs_pb2_grpc.JobsStub]:
    async with (
        running_server(jobs_only_settings(redis_server.url)) as server,
        jobs_channel(server.address) as channel,
    ):
        yield jobs_pb2_grpc.JobsStub(channel)


async def submit(jobs: jobs_pb2_grpc.JobsStub) -> jobs_pb2.Job:
    request = jobs_pb2.SubmitSynthesisJobRequest(texts=["Tell me about yourself."])
    return (await jobs.SubmitSynthesisJob(request)).job


async def test_redis_outage_is_unavailable_and_service_resumes(
    jobs: jobs_pb2_grpc.JobsStub, redis_server: RedisServerProcess
):
    job = await submit(jobs)
    assert job.state == jobs_pb2.JOB_STATE_QUEUED
    redis_server.kill()
    calls = {
        "get": jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.job_id)),
        "cancel": jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.job_id)),
        "list": jobs.ListJobs(jobs_pb2.ListJobsRequest()),
        "submit": submit(jobs),
        "watch": watch_job(jobs, job.job_id, timeout_s=60, rewatch=False),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, name
        assert "unreachable" in caught.value.details(), name
    redis_server.start()  # an empty Redis on the same port
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.job_id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    again = await submit(jobs)
    fetched = (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=again.job_id))).job
    assert fetched.state == jobs_pb2.JOB_STATE_QUEUED


async def test_a_store_demoted_to_replica_is_unavailable_and_service_resumes(
    jobs: jobs_pb2_grpc.JobsStub, redis_server: RedisServerProcess
):
    """What a failover can leave a connection talking to for a moment: a node that is a
    replica now. Its refusal to write (READONLY) is a retryable UNAVAILABLE, never INTERNAL."""
    node = redis.Redis.from_url(redis_server.url)
    try:
        node.replicaof("127.0.0.1", free_port("127.0.0.1"))  # a master that is not there
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit(jobs)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "failing over" in caught.value.details()
        node.replicaof("NO", "ONE")  # promoted again, as Sentinel would
        assert (await submit(jobs)).state == jobs_pb2.JOB_STATE_QUEUED
    finally:
        node.close()
