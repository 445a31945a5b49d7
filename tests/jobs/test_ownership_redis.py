"""Job ownership on the Redis/Celery backend: records in a real Redis, submitted through a
real server. No worker runs here (jobs stay QUEUED): ownership is a property of the
records, which every server replica and worker shares."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from speech.v1 import jobs_pb2_grpc
from speech_jobs.ids import scoped_id
from speech_jobs.records import JobRecord
from speech_platform.config import PrincipalSettings
from tests.jobs.conftest import jobs_channel
from tests.jobs.ownership import check_ownership
from tests.support.server import running_server
from tests.support.server import test_settings as server_settings


@pytest.fixture
async def stub(
    redis_url: str, redis_key_prefix: str
) -> AsyncIterator[tuple[jobs_pb2_grpc.JobsStub, str]]:
    settings = server_settings(["jobs"])
    settings.jobs.backend = "celery"
    settings.jobs.broker_url = redis_url
    settings.jobs.key_prefix = redis_key_prefix
    queue = f"ownership-{uuid.uuid4().hex[:8]}"
    settings.jobs.synthesis_queue = queue
    settings.auth.principals = [
        PrincipalSettings(name="alice", token="alice-token"),
        PrincipalSettings(name="bob", token="bob-token"),
        PrincipalSettings(name="ops", token="ops-token", roles=["admin"]),
    ]
    async with running_server(settings) as server, jobs_channel(server.address) as channel:
        yield jobs_pb2_grpc.JobsStub(channel), redis_key_prefix
    client = redis.Redis.from_url(redis_url)
    client.delete(queue)
    client.close()


async def test_jobs_belong_to_their_owner_on_the_redis_backend(
    stub: tuple[jobs_pb2_grpc.JobsStub, str], redis_url: str
) -> None:
    jobs, prefix = stub
    await check_ownership(jobs, "alice-token", "bob-token", "ops-token", "weekly")
    client = redis.Redis.from_url(redis_url)
    try:
        records = {
            name: JobRecord.from_fields(
                client.hgetall(f"{prefix}job:{scoped_id(name, 'weekly')}")
            )
            for name in ("alice", "bob")
        }
    finally:
        client.close()
    assert records["alice"].principal == "alice" and records["bob"].principal == "bob"
    assert records["alice"].public_id == records["bob"].public_id == "weekly"
