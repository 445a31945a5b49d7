"""The ``speech.v1.Jobs`` service: submit, get, watch, cancel and list long jobs.

The backend follows ``settings.jobs.backend``: "local" runs jobs in this process on the
server's own engines (no Redis needed; records live in memory and a restart loses them);
"celery" keeps records in Redis and sends jobs to ``speech-worker`` processes through the
broker. The API behaves the same on both.

Every job belongs to the principal that submitted it (speech_platform.principals): the
store keeps it under an id scoped to that owner (speech_jobs.ids.scoped_id), so another
caller's Get, Watch or Cancel of the same id cannot reach it (NOT_FOUND, exactly as for an
id nobody used), and ListJobs lists the caller's own. A principal with the admin role may
name any owner, and lists everyone's jobs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import grpc
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from speech.v1 import jobs_pb2, jobs_pb2_grpc
from speech_jobs.engine_adapters import engines_from_services
from speech_jobs.ids import check_job_id, new_job_id, scoped_id
from speech_jobs.local import LocalDispatcher
from speech_jobs.records import JobKind, JobRecord, JobState, to_proto
from speech_jobs.runner import JobEngines, JobRunner
from speech_jobs.store import MAX_LIST, JobStore, MemoryJobStore
from speech_jobs.submission import (
    Submission,
    synthesis_submission,
    transcription_submission,
)
from speech_platform.budget import MIB
from speech_platform.errors import InvalidArgument, NotFound, Unavailable
from speech_platform.principals import ANONYMOUS_NAME, Principal, current_principal
from speech_platform.service import ServiceContext

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50


class Dispatcher(Protocol):
    async def dispatch(self, job_id: str, kind: JobKind) -> None: ...

    async def cancelled(self, job_id: str) -> None: ...

    async def close(self, grace_s: float) -> None: ...


class JobsService:
    """Implements SpeechService for the Jobs API."""

    name: str = "jobs"
    grpc_service_names: tuple[str, ...] = ("speech.v1.Jobs",)

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._settings = ctx.settings
        self._store: JobStore | None = None
        self._dispatcher: Dispatcher | None = None
        self._engines = JobEngines()
        self._in_process = ctx.settings.jobs.backend == "local"

    # ------------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> None:
        jobs_pb2_grpc.add_JobsServicer_to_server(JobsServicer(self), server)

    async def start(self) -> None:
        # Resolved here, not in build(): every service is built before any starts.
        jobs = self._settings.jobs
        self._engines = engines_from_services(self._ctx.services)
        if self._in_process:
            store = MemoryJobStore(
                ttl_s=jobs.result_ttl_s, max_audio_bytes=jobs.max_queued_audio_mb * MIB
            )
            runner = JobRunner(store, self._engines, jobs, owner="local")
            self._store = store
            self._dispatcher = LocalDispatcher(runner, jobs.local_concurrency)
        else:
            # Imported here, not at the top: the default (local) backend never loads Celery
            # or the Redis client, which every server process would otherwise carry.
            from speech_jobs.celery_app import make_celery_app
            from speech_jobs.celery_dispatch import CeleryDispatcher
            from speech_jobs.redis_store import RedisJobStore

            app = make_celery_app(jobs)
            redis_store = RedisJobStore.for_settings(jobs)
            self._store = redis_store
            self._dispatcher = CeleryDispatcher(app, jobs, redis_store)
        log.info("jobs service started", extra={"backend": jobs.backend})

    async def stop(self, grace_s: float) -> None:
        if self._dispatcher is not None:
            await self._dispatcher.close(grace_s)
        if self._store is not None:
            await self._store.close()

    # ------------------------------------------------------------------ API

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise Unavailable("the jobs service is starting; retry shortly")
        return self._store

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise Unavailable("the jobs service is starting; retry shortly")
        return self._dispatcher

    async def submit_transcription(
        self, request: jobs_pb2.SubmitTranscriptionJobRequest, principal: Principal
    ) -> jobs_pb2.Job:
        job_id = check_job_id(request.job_id) if request.job_id else new_job_id()
        submission = transcription_submission(
            request, self._settings, self._engines.transcription, in_process=self._in_process
        )
        return await self._submit(job_id, JobKind.TRANSCRIPTION, submission, principal)

    async def submit_synthesis(
        self, request: jobs_pb2.SubmitSynthesisJobRequest, principal: Principal
    ) -> jobs_pb2.Job:
        job_id = check_job_id(request.job_id) if request.job_id else new_job_id()
        submission = synthesis_submission(
            request, self._settings, self._engines.synthesis, in_process=self._in_process
        )
        return await self._submit(job_id, JobKind.SYNTHESIS, submission, principal)

    async def _submit(
        self, job_id: str, kind: JobKind, submission: Submission, principal: Principal
    ) -> jobs_pb2.Job:
        now = time.time()
        store_id = scoped_id(principal.name, job_id)
        record, created = await self.store.create(
            JobRecord(
                store_id, kind, JobState.QUEUED, 0.0, "", now, now,
                principal=principal.name, public_id=job_id,
            ),
            submission.spec,
            submission.audio,
        )
        if record.kind is not kind:
            raise InvalidArgument(
                f"job_id {job_id!r} is already used by a {record.kind.label} job"
            )
        if created or record.state is JobState.QUEUED:
            # A repeated submit of a job still queued publishes it again: that heals a
            # first publish that failed, and a duplicate message is harmless.
            await self.dispatcher.dispatch(store_id, kind)
        return await self._public(record)

    async def get(self, job_id: str, principal: Principal, owner: str = "") -> jobs_pb2.Job:
        store_id = self._store_id(job_id, principal, owner)
        record = await self.store.get(store_id)
        if record is None:
            raise self._not_found(job_id)
        return await self._public(record)

    async def watch(
        self, job_id: str, principal: Principal, owner: str = ""
    ) -> AsyncIterator[jobs_pb2.Job]:
        store_id = self._store_id(job_id, principal, owner)
        found = False
        async for record in self.store.watch(store_id):
            found = True
            yield await self._public(record)
        if not found:
            raise self._not_found(job_id)

    async def cancel(self, job_id: str, principal: Principal, owner: str = "") -> jobs_pb2.Job:
        store_id = self._store_id(job_id, principal, owner)
        record = await self.store.cancel(store_id)
        if record is None:
            raise self._not_found(job_id)
        if record.state is JobState.CANCELLED:
            await self.dispatcher.cancelled(store_id)
        return await self._public(record)

    async def list_jobs(
        self, request: jobs_pb2.ListJobsRequest, principal: Principal
    ) -> list[jobs_pb2.Job]:
        size = request.page_size or DEFAULT_PAGE_SIZE
        if not 0 < size <= MAX_LIST:
            raise InvalidArgument(f"page_size must lie in 0..{MAX_LIST}, got {request.page_size}")
        state: JobState | None = None
        if request.state:
            try:
                state = JobState(request.state)
            except ValueError:
                raise InvalidArgument(f"state: unknown JobState value {request.state}") from None
        if principal.is_admin:
            owner: str | None = request.owner or None
        elif request.owner and request.owner != principal.name:
            return []  # another owner's jobs are invisible, as if there were none
        else:
            owner = principal.name
        # Results stay out of listings (they can be megabytes each): GetJob has them.
        return [to_proto(r) for r in await self.store.list_jobs(size, state, owner)]

    # ------------------------------------------------------------------ helpers

    def _store_id(self, job_id: str, principal: Principal, owner: str) -> str:
        """The store's id of the job ``principal`` asks for: its own unless an admin names
        another ``owner``; anyone else naming another owner finds nothing (NOT_FOUND)."""
        check_job_id(job_id)
        if owner and owner != principal.name and not principal.is_admin:
            raise self._not_found(job_id)
        return scoped_id(owner or principal.name, job_id)

    def _not_found(self, job_id: str) -> NotFound:
        hours = self._settings.jobs.result_ttl_s / 3600
        return NotFound(
            f"no job {job_id!r}: unknown, or it ended more than {hours:g} h ago and expired"
        )

    async def _public(self, record: JobRecord) -> jobs_pb2.Job:
        """The Job its owner sees (``job_id`` is the owner's own id, not the store's)."""
        result = await self.store.result(record.job_id) if record.terminal else None
        return to_proto(record, result)


#: Replies of a Redis node in the middle of a failover: a connection that reached a node
#: just demoted to replica (a write refused as READONLY, or WAIT refused on a replica), or
#: a replica that lost its master. Each passes once Sentinel's new master serves. (redis-py
#: strips a reply's error code from the message of the exception it maps it to.)
_FAILOVER_REPLIES = ("WAIT cannot be used with replica", "MASTERDOWN", "READONLY")


def in_failover(error: RedisResponseError) -> bool:
    """Whether a Redis error reply is a failover's transient state, not a fault of ours."""
    message = str(error)
    return isinstance(error, RedisReadOnlyError) or any(r in message for r in _FAILOVER_REPLIES)


@contextlib.contextmanager
def _store_reachable() -> Iterator[None]:
    """A job store (Redis) that cannot be reached, or is failing over, is UNAVAILABLE,
    which clients retry."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as error:
        log.warning("job store unreachable", extra={"error": str(error)})
        raise Unavailable(f"the job store is unreachable ({error}); retry shortly") from None
    except RedisResponseError as error:
        if not in_failover(error):
            raise
        log.warning("job store failing over", extra={"error": str(error)})
        raise Unavailable(f"the job store is failing over ({error}); retry shortly") from None


#: The caller of a server run without the interceptor's authenticator (in-process tests).
_NOBODY = Principal(ANONYMOUS_NAME, authenticated=False)


def _caller() -> Principal:
    """The principal the interceptor bound to this RPC."""
    return current_principal() or _NOBODY


class JobsServicer(jobs_pb2_grpc.JobsServicer):
    """The gRPC surface; errors raised here are mapped by the server's interceptor."""

    def __init__(self, service: JobsService) -> None:
        self._service = service

    async def SubmitTranscriptionJob(
        self, request: jobs_pb2.SubmitTranscriptionJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.SubmitTranscriptionJobResponse:
        with _store_reachable():
            job = await self._service.submit_transcription(request, _caller())
        return jobs_pb2.SubmitTranscriptionJobResponse(job=job)

    async def SubmitSynthesisJob(
        self, request: jobs_pb2.SubmitSynthesisJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.SubmitSynthesisJobResponse:
        with _store_reachable():
            job = await self._service.submit_synthesis(request, _caller())
        return jobs_pb2.SubmitSynthesisJobResponse(job=job)

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        with _store_reachable():
            job = await self._service.get(request.job_id, _caller(), request.owner)
            return jobs_pb2.GetJobResponse(job=job)

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jobs_pb2.WatchJobResponse]:
        with _store_reachable():
            async for job in self._service.watch(request.job_id, _caller(), request.owner):
                yield jobs_pb2.WatchJobResponse(job=job)

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.CancelJobResponse:
        with _store_reachable():
            job = await self._service.cancel(request.job_id, _caller(), request.owner)
            return jobs_pb2.CancelJobResponse(job=job)

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        with _store_reachable():
            jobs = await self._service.list_jobs(request, _caller())
            return jobs_pb2.ListJobsResponse(jobs=jobs)


def build(ctx: ServiceContext) -> JobsService:
    return JobsService(ctx)
