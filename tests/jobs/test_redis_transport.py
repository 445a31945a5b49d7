"""Every Redis client of the platform (the cache, the job store, the Celery broker and result
backend) over TLS with a password, straight to a server (``rediss://``) and through TLS
Sentinels (``sentinels://``): real redis-server processes, throwaway certificates made with
``cryptography``, the password read from a file as from a mounted Secret.

Mutual TLS is on (``tls-auth-clients yes``), so the client certificate settings are used too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from speech_jobs.celery_app import make_celery_app
from speech_jobs.records import JobKind, JobRecord, JobState
from speech_jobs.redis_store import RedisJobStore
from speech_platform.cache import build_cache, cache_key
from speech_platform.config import CacheSettings, JobsSettings, RedisConnectionSettings
from tests.platform.cache.helpers import HashingCompute
from tests.support.redis import RedisServerProcess, free_port
from tests.support.sentinel import SentinelGroup
from tests.support.tls import Certificates, make_certificates

PASSWORD = "transport-secret"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture(scope="module")
def connection(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> RedisConnectionSettings:
    password_file = tmp_path_factory.mktemp("redis-secret") / "password"
    password_file.write_text(PASSWORD + "\n")
    return RedisConnectionSettings(
        password_file=str(password_file),
        tls_ca_file=str(certificates.ca),
        tls_cert_file=str(certificates.client_cert),
        tls_key_file=str(certificates.client_key),
    )


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates) -> Iterator[tuple[RedisServerProcess, int]]:
    """A redis-server with a password and a mutual-TLS port (readiness on its plain port)."""
    tls_port = free_port()
    server = RedisServerProcess(
        password=PASSWORD,
        extra_args=certificates.redis_server_args(tls_port, auth_clients=True),
    )
    with server:
        server.start()
        yield server, tls_port


@pytest.fixture(scope="module")
def tls_sentinels(certificates: Certificates) -> Iterator[SentinelGroup]:
    """A master, a replica and one Sentinel, all speaking TLS (and replicating over it)."""
    group = SentinelGroup(
        password=PASSWORD, replicas=1, sentinels=1, certificates=certificates
    )
    with group:
        group.start()
        yield group


def tls_client(certificates: Certificates, port: int) -> redis.Redis:
    """A verifying TLS client of one port, for inspecting what the clients wrote."""
    return redis.Redis(
        host="127.0.0.1", port=port, password=PASSWORD, ssl=True,
        ssl_ca_certs=str(certificates.ca), ssl_certfile=str(certificates.client_cert),
        ssl_keyfile=str(certificates.client_key), socket_timeout=5.0,
    )


async def exercise_every_client(
    url: str, connection: RedisConnectionSettings, inspect: redis.Redis
) -> None:
    """Cache round trip, job store transitions and a Celery message and result, all through
    ``url``; ``inspect`` (a direct TLS client of the master) checks they really landed."""
    prefix = f"transport:{uuid.uuid4().hex[:8]}:"
    # the cache
    cache = build_cache(
        CacheSettings(backend="redis", redis_url=url, redis=connection, key_prefix=prefix)
    )
    assert cache is not None
    engine = HashingCompute(b"through tls")
    key = cache_key("tls", {"text": prefix})
    assert await cache.get_or_compute("tls", key, engine) == (engine.expected(), False)
    assert await cache.get_or_compute("tls", key, engine) == (engine.expected(), True)
    assert inspect.get(prefix + key) == engine.expected()
    await cache.close()
    # the job store
    jobs = JobsSettings(
        backend="celery", broker_url=url, redis=connection, key_prefix=prefix,
        transcription_queue=f"{prefix}queue",
    )
    store = RedisJobStore.for_settings(jobs)
    try:
        now = 1.0
        record, created = await store.create(
            JobRecord("tls-job", JobKind.TRANSCRIPTION, JobState.QUEUED, 0.0, "", now, now),
            b"spec",
        )
        assert created and record.state is JobState.QUEUED
        started = await store.start("tls-job", "worker-1")
        assert started.record is not None and started.record.state is JobState.RUNNING
        assert inspect.hget(f"{prefix}job:tls-job", "state") == b"2"
    finally:
        await store.close()
    # the Celery broker: a published job is in the master's queue, and a consumer gets it
    app: Celery = make_celery_app(jobs)
    try:
        app.send_task("speech.jobs.transcription", kwargs={"job_id": "tls-job"},
                      queue=jobs.transcription_queue, task_id="tls-job")
        assert inspect.llen(jobs.transcription_queue) == 1
        with app.connection_for_read() as consumer:
            queue = consumer.SimpleQueue(jobs.transcription_queue)
            message = queue.get(timeout=10)
            assert message.headers["id"] == "tls-job"
            message.ack()
            queue.close()
        # and its result backend
        app.backend.store_result("tls-job", {"job_id": "tls-job", "outcome": "finished"},
                                 "SUCCESS")
        assert app.backend.get_task_meta("tls-job")["result"]["outcome"] == "finished"
    finally:
        app.close()


async def test_every_client_over_tls_with_a_password(
    tls_server: tuple[RedisServerProcess, int],
    certificates: Certificates,
    connection: RedisConnectionSettings,
):
    server, tls_port = tls_server
    url = f"rediss://127.0.0.1:{tls_port}/0"  # no secret, no file name: both in settings
    with tls_client(certificates, tls_port) as inspect:
        await exercise_every_client(url, connection, inspect)
    # without the password, or without a client certificate, nothing gets in
    anonymous = connection.model_copy(update={"password_file": ""})
    store = RedisJobStore.for_settings(
        JobsSettings(broker_url=url, redis=anonymous, redis_retry_s=0)
    )
    with pytest.raises(redis.AuthenticationError):
        await store.get("anything")
    await store.close()
    no_certificate = connection.model_copy(update={"tls_cert_file": "", "tls_key_file": ""})
    store = RedisJobStore.for_settings(
        JobsSettings(broker_url=url, redis=no_certificate, redis_retry_s=0)
    )
    with pytest.raises(redis.ConnectionError):
        await store.get("anything")
    await store.close()
    # and the plain port still wants the password
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0)).ping()


async def test_every_client_through_tls_sentinels(
    tls_sentinels: SentinelGroup,
    certificates: Certificates,
    connection: RedisConnectionSettings,
):
    assert tls_sentinels.url.startswith("sentinels://")
    master_tls_port = tls_sentinels.master_port()
    assert master_tls_port != tls_sentinels.master().port  # the TLS port is announced
    with tls_client(certificates, master_tls_port) as inspect:
        await exercise_every_client(tls_sentinels.url, connection, inspect)

