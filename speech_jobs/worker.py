"""Inside a ``speech-worker`` process: the engines on a private event loop, and the tasks.

The Celery solo pool runs one job at a time in the main thread; the job's own work (the
Transcriber's batched windows, the synthesizer's batched texts) runs on an asyncio loop in
a background thread, the same engines and batchers the server uses. So one job's windows
fill batches across every model instance of the worker.

What protects a job, besides the broker's acks_late:

* **Lease.** The running worker renews ``lease:<id>`` every lease_ttl_s / 3. Every worker
  sweeps at start and then every lease_ttl_s / 2 for RUNNING jobs whose lease lapsed (their
  worker was SIGKILLed, OOM-killed, lost its node) and queues them again. Recovery takes
  about one lease, not the hours of a visibility timeout sized for the longest job.
* **Drain.** On SIGTERM (Celery's warm shutdown) the current job keeps running for
  worker_drain_s; if it is still running then, it stops between windows, goes back to
  QUEUED and is published again before this delivery is acknowledged. Either way it is
  never dropped.
* **Idempotence.** Whatever gets delivered twice (the re-publish and a late re-delivery of
  the original message), the store's start transition lets exactly one run proceed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import redis
from celery import Celery, Task

from speech_jobs.celery_app import TASK_NAMES, publish_job
from speech_jobs.engine_adapters import Stoppable, load_worker_engines
from speech_jobs.records import JobKind
from speech_jobs.redis_store import RedisJobStore
from speech_jobs.runner import JobRunner, RunOutcome
from speech_platform.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerRuntime:
    """Engines, job store and runner of one worker process, on their own event loop."""

    def __init__(
        self, settings: Settings, kinds: Sequence[JobKind], hostname: str, app: Celery
    ) -> None:
        self.settings = settings
        self.kinds = tuple(kinds)
        self.hostname = hostname
        self.app = app
        #: Unique per process life, so a restarted worker never mistakes an old lease for its own.
        self.owner = f"{hostname}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="speech-engines", daemon=True
        )
        self._runner: JobRunner | None = None
        self._store: RedisJobStore | None = None
        self._services: list[Stoppable] = []
        self._drain: asyncio.Event | None = None
        self._draining = False
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Loads the engines (blocking); the worker consumes only after this returns."""
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        jobs = self.settings.jobs
        engines, services = await load_worker_engines(self.settings, self.kinds)
        self._services = services
        self._store = RedisJobStore.for_settings(jobs)
        self._runner = JobRunner(self._store, engines, jobs, self.owner)
        self._drain = asyncio.Event()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self._close(), timeout_s=self.settings.server.drain_grace_s + 10)
            except TimeoutError:
                log.warning("engines did not stop in time; exiting anyway")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        grace = self.settings.server.drain_grace_s
        await asyncio.gather(*(s.stop(grace) for s in self._services), return_exceptions=True)
        if self._store is not None:
            await self._store.close()

    # ------------------------------------------------------------------ jobs

    def run_job(self, job_id: str) -> RunOutcome:
        """Runs one job to its end (blocking the calling thread, the solo pool's)."""
        assert self._runner is not None and self._drain is not None, "start() first"
        return self._call(self._runner.run(job_id, stop=self._drain))

    def begin_drain(self) -> None:
        """SIGTERM: the running job gets worker_drain_s more, then goes back to the queue.

        Called from Celery's signal handler, so it only schedules (thread-safe)."""
        self._loop.call_soon_threadsafe(self._schedule_drain)

    def _schedule_drain(self) -> None:
        if self._draining or self._drain is None:
            return
        self._draining = True
        delay = self.settings.jobs.worker_drain_s
        log.warning("draining: the current job gets %.0f s before it is re-queued", delay)
        self._loop.call_later(delay, self._drain.set)

    async def _sweep_forever(self) -> None:
        """Re-queues jobs whose worker died: at start, then every half lease."""
        assert self._store is not None
        interval = max(self.settings.jobs.lease_ttl_s / 2.0, 0.5)
        while True:
            try:
                for record in await self._store.reclaim_orphans():
                    await asyncio.to_thread(
                        publish_job, self.app, self.settings.jobs, record.kind, record.job_id
                    )
                    log.warning(
                        "re-queued a job whose worker stopped renewing its lease",
                        extra={"job_id": record.job_id, "attempts": record.attempts},
                    )
            except Exception as error:
                log.warning("orphan sweep failed", extra={"error": str(error)})
            await asyncio.sleep(interval)  # the sweep's period, not a synchronisation

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    """One task per job kind; each only passes the job id to the runtime."""
    for kind in runtime.kinds:
        app.task(
            name=TASK_NAMES[kind],
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
        )(_job_task(runtime, kind))


def _job_task(runtime: WorkerRuntime, kind: JobKind) -> Any:
    def run_job(task: Task, job_id: str) -> dict[str, str]:
        try:
            outcome = runtime.run_job(job_id)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            # The store is unreachable: try again later rather than lose the job.
            raise task.retry(exc=error, countdown=2.0, max_retries=None) from error
        if outcome is RunOutcome.REQUEUED:
            # Published before this delivery is acknowledged (acks_late), so the job is
            # in the broker at every moment.
            publish_job(task.app, runtime.settings.jobs, kind, job_id)
        return {"job_id": job_id, "outcome": outcome.value}

    run_job.__name__ = f"{kind.label}_job"
    run_job.__qualname__ = run_job.__name__
    return run_job
