"""Runs one job to its end, the same way in a Celery worker and in the embedded backend.

A run owns the job for as long as its store lease says so. While the work (transcribing
windows, synthesizing texts) goes on, three things watch for the end of that ownership:
the job's event stream (a CancelJob arrives as an event, so a running job stops between two
windows at the latest; its batcher requests still waiting are withdrawn, never computed),
the heartbeat that renews the lease, and each progress report. A ``stop`` event (SIGTERM
drain) ends the run early and gives the job back to the queue instead of dropping it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from batcher import BatcherClosed, QueueFull
from speech.v1 import jobs_pb2
from speech_jobs.engines import SynthesisEngine, SynthesizedText, TranscriptionEngine
from speech_jobs.records import JobKind, JobRecord, JobState
from speech_jobs.sources import read_uri
from speech_jobs.store import JobStore, StartDecision
from speech_platform.config import JobsSettings
from speech_platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    SpeechError,
    Unavailable,
)
from speech_platform.metrics import JOB_DURATION, JOBS, JOBS_RUNNING

log = logging.getLogger(__name__)

#: A job whose worker died this many times is failed instead of tried again (a poison job
#: that kills every worker it reaches must not crash-loop the fleet forever).
MAX_ATTEMPTS = 5
#: Failures of capacity, not of the job: the job goes back to the queue and runs later.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    QueueFull,
    BatcherClosed,
    ResourceExhausted,
    Unavailable,
)
#: Texts of one synthesis job in the batcher at once: enough to fill batches and keep
#: every instance busy, few enough that live requests are not queued behind thousands.
SYNTHESIS_PARALLELISM = 8
#: Seconds a finished run waits for its helper tasks (heartbeat, event watch) to stop.
CLEANUP_TIMEOUT_S = 5.0


class RunOutcome(enum.Enum):
    #: The job reached a final state (in this run, or by a cancel during it).
    FINISHED = "finished"
    #: Nothing to do: a duplicate delivery, a job already final, or an unknown id.
    SKIPPED = "skipped"
    #: Stopped unfinished and put back to QUEUED: the caller must queue it again.
    REQUEUED = "requeued"
    #: Another worker took the job over (this one's lease lapsed); drop it.
    LOST = "lost"


@dataclass(frozen=True)
class JobEngines:
    transcription: TranscriptionEngine | None = None
    synthesis: SynthesisEngine | None = None


class _OwnershipEnd:
    """Set once the record shows this run no longer owns the job, with the reason."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self.event = asyncio.Event()
        self.reason = ""

    def check(self, record: JobRecord | None) -> None:
        if self.event.is_set():
            return
        if record is None:
            self.reason = "the job record disappeared"
        elif record.state is JobState.CANCELLED:
            self.reason = "cancelled"
        elif record.state is not JobState.RUNNING or record.owner != self._owner:
            self.reason = f"now {record.state.name} with owner {record.owner or '(none)'}"
        else:
            return
        self.event.set()


class ProgressReporter:
    """Takes progress from the engine (any thread) and writes only the latest value.

    Engines report after each window or text; when the store is slower than that, the
    intermediate values are skipped, never queued up.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        owner: str,
        on_record: Callable[[JobRecord | None], None],
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._owner = owner
        self._on_record = on_record
        self._loop = asyncio.get_running_loop()
        self._wanted = 0.0
        self._sent = 0.0
        self._dirty = asyncio.Event()

    def update(self, fraction: float) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._raise_to(fraction)
        else:
            self._loop.call_soon_threadsafe(self._raise_to, fraction)

    def _raise_to(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if fraction > self._wanted:
            self._wanted = fraction
            self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.flush()

    async def flush(self) -> None:
        value = self._wanted
        if value <= self._sent:
            return
        try:
            record = await self._store.progress(self._job_id, self._owner, value)
        except Exception as error:  # a store hiccup must not fail the job; the next try wins
            log.warning(
                "progress not recorded", extra={"job_id": self._job_id, "error": str(error)}
            )
            return
        self._sent = value
        self._on_record(record)


class JobRunner:
    """Runs jobs for one owner (a worker process, or the embedded backend)."""

    def __init__(
        self,
        store: JobStore,
        engines: JobEngines,
        settings: JobsSettings,
        owner: str,
    ) -> None:
        self._store = store
        self._engines = engines
        self._settings = settings
        self.owner = owner
        self._heartbeat_s = max(settings.lease_ttl_s / 3.0, 0.2)

    async def run(self, job_id: str, *, stop: asyncio.Event | None = None) -> RunOutcome:
        started = await self._store.start(job_id, self.owner)
        if started.decision is not StartDecision.RUN or started.record is None:
            log.info(
                "job not run",
                extra={"job_id": job_id, "decision": started.decision.value, "owner": self.owner},
            )
            return RunOutcome.SKIPPED
        record = started.record
        if record.attempts > MAX_ATTEMPTS:
            await self._end(
                record,
                JobState.FAILED,
                error=f"gave up after {MAX_ATTEMPTS} attempts: every worker that ran this job "
                "stopped before finishing it",
                began=time.perf_counter(),
            )
            return RunOutcome.FINISHED
        if record.attempts > 1:
            log.warning(
                "running a job again", extra={"job_id": job_id, "attempt": record.attempts}
            )
        label = record.kind.label
        JOBS_RUNNING.labels(label).inc()
        try:
            return await self._supervise(record, stop)
        finally:
            JOBS_RUNNING.labels(label).dec()

    # ------------------------------------------------------------------ supervision

    async def _supervise(self, record: JobRecord, stop: asyncio.Event | None) -> RunOutcome:
        job_id = record.job_id
        began = time.perf_counter()
        ended = _OwnershipEnd(self.owner)
        reporter = ProgressReporter(self._store, job_id, self.owner, ended.check)
        helpers = [
            asyncio.create_task(reporter.run(), name=f"progress-{job_id}"),
            asyncio.create_task(self._watch(job_id, ended), name=f"watch-{job_id}"),
            asyncio.create_task(self._heartbeat(job_id, ended), name=f"heartbeat-{job_id}"),
        ]
        work = asyncio.create_task(self._work(record, reporter.update), name=f"work-{job_id}")
        waiters = {work, asyncio.create_task(ended.event.wait(), name=f"ended-{job_id}")}
        if stop is not None:
            waiters.add(asyncio.create_task(stop.wait(), name=f"stop-{job_id}"))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                return await self._complete(record, work, reporter, began)
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            if ended.event.is_set():
                log.info("job run ended", extra={"job_id": job_id, "reason": ended.reason})
                return RunOutcome.FINISHED if ended.reason == "cancelled" else RunOutcome.LOST
            await reporter.flush()
            if await self._store.requeue(job_id, self.owner):
                log.warning("job given back to the queue (stopping)", extra={"job_id": job_id})
                return RunOutcome.REQUEUED
            return RunOutcome.FINISHED
        finally:
            await _stop_tasks([*helpers, *waiters])

    async def _watch(self, job_id: str, ended: _OwnershipEnd) -> None:
        try:
            async for record in self._store.watch(job_id):
                ended.check(record)
                if ended.event.is_set():
                    return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the heartbeat still notices a cancel, only later
            log.warning("job event stream lost", extra={"job_id": job_id, "error": str(error)})

    async def _heartbeat(self, job_id: str, ended: _OwnershipEnd) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                ended.check(await self._store.heartbeat(job_id, self.owner))
            except Exception as error:
                log.warning("lease not renewed", extra={"job_id": job_id, "error": str(error)})

    async def _complete(
        self,
        record: JobRecord,
        work: asyncio.Task[tuple[bytes, str]],
        reporter: ProgressReporter,
        began: float,
    ) -> RunOutcome:
        error = ""
        result: bytes | None = None
        try:
            result, error = work.result()
            state = JobState.FAILED if error else JobState.SUCCEEDED
        except TRANSIENT_ERRORS as failure:
            log.warning(
                "job hit a capacity limit; queueing it again",
                extra={"job_id": record.job_id, "error": str(failure)},
            )
            if await self._store.requeue(record.job_id, self.owner):
                return RunOutcome.REQUEUED
            return RunOutcome.FINISHED
        except SpeechError as failure:
            state, error = JobState.FAILED, failure.message
        except Exception as failure:
            log.exception("job failed unexpectedly", extra={"job_id": record.job_id})
            state = JobState.FAILED
            error = f"internal error while running the job ({type(failure).__name__}: {failure})"
        await reporter.flush()
        final = await self._end(record, state, error=error, result=result, began=began)
        return RunOutcome.FINISHED if final is not None else RunOutcome.LOST

    async def _end(
        self,
        record: JobRecord,
        state: JobState,
        *,
        error: str = "",
        result: bytes | None = None,
        began: float,
    ) -> JobRecord | None:
        final = await self._store.finish(
            record.job_id, self.owner, state, error=error, result=result
        )
        if final is None or final.state is not state:
            return final
        JOBS.labels(record.kind.label, state.name.lower()).inc()
        JOB_DURATION.labels(record.kind.label).observe(time.perf_counter() - began)
        log.info(
            "job ended",
            extra={"job_id": record.job_id, "state": state.name, "error": error or None},
        )
        return final

    # ------------------------------------------------------------------ the work itself

    async def _work(
        self, record: JobRecord, on_progress: Callable[[float], None]
    ) -> tuple[bytes, str]:
        """(serialized result, error); a non-empty error fails the job with its result kept."""
        spec = await self._store.spec(record.job_id)
        if spec is None:
            raise InvalidArgument("the job's request has expired; submit it again")
        if record.kind is JobKind.TRANSCRIPTION:
            return await self._transcribe(record.job_id, spec, on_progress), ""
        return await self._synthesize(spec, on_progress)

    async def _transcribe(
        self, job_id: str, spec: bytes, on_progress: Callable[[float], None]
    ) -> bytes:
        engine = self._engines.transcription
        if engine is None:
            raise FailedPrecondition("this worker runs no speech-to-text engine")
        request = jobs_pb2.SubmitTranscriptionJobRequest.FromString(spec)
        audio: bytes | None
        if request.WhichOneof("source") == "uri":
            audio = await asyncio.to_thread(
                read_uri, request.uri, self._settings.file_roots, self._settings.max_audio_bytes
            )
        else:
            audio = await self._store.audio(job_id)
            if audio is None:
                raise InvalidArgument("the job's audio has expired; submit it again")
        response = await engine.transcribe(
            audio,
            request.config,
            max_seconds=self._settings.max_audio_seconds,
            on_progress=on_progress,
        )
        return response.SerializeToString()

    async def _synthesize(
        self, spec: bytes, on_progress: Callable[[float], None]
    ) -> tuple[bytes, str]:
        engine = self._engines.synthesis
        if engine is None:
            raise FailedPrecondition("this worker runs no text-to-speech engine")
        request = jobs_pb2.SubmitSynthesisJobRequest.FromString(spec)
        total = len(request.texts)
        outcomes: list[SynthesizedText | jobs_pb2.SynthesizedItem | None] = [None] * total
        slots = asyncio.Semaphore(SYNTHESIS_PARALLELISM)
        done = 0

        async def one(index: int, text: str) -> None:
            nonlocal done
            async with slots:
                try:
                    outcomes[index] = await engine.synthesize(index, text, request)
                except TRANSIENT_ERRORS:
                    raise
                except SpeechError as failure:  # this text fails; the others go on
                    outcomes[index] = jobs_pb2.SynthesizedItem(
                        index=index, text=text, error=failure.message
                    )
            done += 1
            on_progress(done / total)

        await _gather_or_cancel([one(i, t) for i, t in enumerate(request.texts)])
        result = jobs_pb2.SynthesisJobResult()
        first_ok = next((o for o in outcomes if isinstance(o, SynthesizedText)), None)
        if first_ok is not None:
            result.encoding = first_ok.encoding  # type: ignore[assignment]
            result.sample_rate_hertz = first_ok.sample_rate_hertz
            result.engine = first_ok.engine
            result.voice = first_ok.voice
        for outcome in outcomes:
            assert outcome is not None
            result.items.append(outcome.item if isinstance(outcome, SynthesizedText) else outcome)
        if first_ok is None:
            return result.SerializeToString(), (
                f"all {total} texts failed; the first: {result.items[0].error}"
            )
        return result.SerializeToString(), ""


async def _stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancels the run's helpers and waits for them, but never for long: the job's outcome
    is already decided, and a helper stuck in a Redis call must not hold the worker."""
    for task in tasks:
        task.cancel()
    _done, stuck = await asyncio.wait(tasks, timeout=CLEANUP_TIMEOUT_S)
    if stuck:
        names = sorted(task.get_name() for task in stuck)
        log.warning("job helpers did not stop in time", extra={"tasks": names})
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as lost


async def _gather_or_cancel(coroutines: list[Awaitable[None]]) -> None:
    """Like gather, but the first failure cancels the rest instead of leaving them running."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
