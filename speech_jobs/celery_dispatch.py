"""The server side of the Celery backend: publish jobs, revoke cancelled ones."""

from __future__ import annotations

import asyncio
import logging

from celery import Celery
from kombu.exceptions import OperationalError

from speech_jobs.celery_app import publish_job
from speech_jobs.records import JobKind
from speech_jobs.redis_store import NotReplicatedError, RedisJobStore
from speech_platform.config import JobsSettings
from speech_platform.errors import Unavailable

log = logging.getLogger(__name__)


class CeleryDispatcher:
    def __init__(self, app: Celery, settings: JobsSettings, store: RedisJobStore) -> None:
        self._app = app
        self._settings = settings
        self._store = store

    async def dispatch(self, job_id: str, kind: JobKind) -> None:
        try:
            await asyncio.to_thread(publish_job, self._app, self._settings, kind, job_id)
        except (OperationalError, OSError) as error:
            # The record exists (QUEUED); submitting again with this job_id publishes it.
            raise Unavailable(
                f"the job broker is unreachable ({error}); retry the submit with "
                f"job_id {job_id!r}"
            ) from None
        try:
            # The message is on the master; with jobs.replica_acks, answer only once the
            # replicas hold it too, so a failover right now cannot lose an accepted job.
            await self._store.confirm_replicated()
        except NotReplicatedError as error:
            raise Unavailable(
                f"the job is queued but not yet replicated ({error}); retry the submit "
                f"with job_id {job_id!r}"
            ) from None

    async def cancelled(self, job_id: str) -> None:
        """Revokes the task, so a worker drops the queued message without running it.

        The job record (already CANCELLED) is what really stops it, also for a job already
        running, so a failed revoke is only logged."""
        try:
            await asyncio.to_thread(self._app.control.revoke, job_id)
        except Exception as error:
            log.warning("revoke failed", extra={"job_id": job_id, "error": str(error)})

    async def close(self, grace_s: float) -> None:
        await asyncio.to_thread(self._app.close)
