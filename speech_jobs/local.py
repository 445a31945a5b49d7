"""The embedded backend: jobs run inside the server process, a bounded number at a time.

This is what the README's plain run command gets (no Redis): the same Jobs API, the same
runner and the server's own engines and batchers. Jobs submit to the batchers at low
priority, so live requests go first (priority aging keeps jobs from starving). Records live
in memory: a restart forgets them, which is the price of needing no Redis.
"""

from __future__ import annotations

import asyncio
import logging

from speech_jobs.records import JobKind
from speech_jobs.runner import JobRunner, RunOutcome

log = logging.getLogger(__name__)

#: Seconds before a job that hit a capacity limit is tried again, times its attempt.
RETRY_BACKOFF_S = 1.0


class LocalDispatcher:
    """Runs each submitted job as an asyncio task, at most ``concurrency`` at once."""

    def __init__(self, runner: JobRunner, concurrency: int) -> None:
        self._runner = runner
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._stop = asyncio.Event()

    async def dispatch(self, job_id: str, kind: JobKind) -> None:
        if job_id in self._tasks or self._closing:
            return
        task = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    async def cancelled(self, job_id: str) -> None:
        """Nothing to do: a waiting job finds itself CANCELLED when its turn comes, and a
        running one sees the cancel event and stops between windows."""

    async def _run(self, job_id: str) -> None:
        attempt = 0
        while not self._stop.is_set():
            async with self._slots:
                outcome = await self._runner.run(job_id, stop=self._stop)
            if outcome is not RunOutcome.REQUEUED or self._closing:
                return
            attempt += 1
            await asyncio.sleep(RETRY_BACKOFF_S * attempt)  # back-off before a retry

    async def close(self, grace_s: float) -> None:
        """Lets running jobs finish within grace_s, then stops the rest (they are lost with
        the process: the embedded backend keeps nothing across restarts)."""
        self._closing = True  # engines are stopping too: no retries from here on
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_s)
            if pending:
                log.warning("stopping unfinished local jobs", extra={"jobs": len(pending)})
        self._stop.set()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
