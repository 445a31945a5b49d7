"""Where job records live, and the state machine every backend enforces.

Transitions (each one atomic, so a re-delivered or duplicated job never runs twice at once
and never undoes a final state)::

    QUEUED --start--> RUNNING --finish--> SUCCEEDED | FAILED
       |                 |  \\--requeue (worker draining, or its lease lapsed)--> QUEUED
       \\----cancel------+----------------------------------------------------> CANCELLED

Only the record's current ``owner`` may report progress on or finish a RUNNING job, so a
worker that lost its job (it stalled past its lease and another took over) cannot overwrite
the new owner's work. Progress only ever grows: a job restarted after a crash keeps the
progress already shown until the new run passes it.

``MemoryJobStore`` (this module) serves the embedded backend; ``RedisJobStore``
(redis_store) serves Celery workers and every server replica.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from speech_jobs.records import TERMINAL_STATES, JobRecord, JobState
from speech_platform.budget import MIB
from speech_platform.errors import ResourceExhausted

#: Newest-first listing returns at most this many jobs.
MAX_LIST = 1000


class StartDecision(enum.Enum):
    #: The caller now owns the job and must run it.
    RUN = "run"
    #: Another live worker owns it (a duplicate delivery): drop this one.
    DUPLICATE = "duplicate"
    #: It already reached a final state (cancelled while queued, or a re-delivery).
    FINISHED = "finished"
    #: No such job (it expired, or was never created).
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Started:
    decision: StartDecision
    record: JobRecord | None


class JobStore(Protocol):
    async def create(
        self, record: JobRecord, spec: bytes, audio: bytes | None = None
    ) -> tuple[JobRecord, bool]:
        """Adds a QUEUED job; (the existing record, False) when the id is taken."""
        ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def spec(self, job_id: str) -> bytes | None:
        """The serialized submit request (audio removed)."""
        ...

    async def audio(self, job_id: str) -> bytes | None: ...

    async def result(self, job_id: str) -> bytes | None: ...

    async def start(self, job_id: str, owner: str) -> Started: ...

    async def progress(self, job_id: str, owner: str, progress: float) -> JobRecord | None:
        """Raises progress (never lowers it) and renews the lease, if ``owner`` still owns
        the job; returns the record as it now is (its state tells the owner of a cancel)."""
        ...

    async def heartbeat(self, job_id: str, owner: str) -> JobRecord | None:
        """Renews the owner's lease; returns the record as it now is."""
        ...

    async def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        *,
        error: str = "",
        result: bytes | None = None,
    ) -> JobRecord | None:
        """Ends a RUNNING job the owner still holds; returns the record as it now is."""
        ...

    async def requeue(self, job_id: str, owner: str) -> bool:
        """RUNNING -> QUEUED for a job the owner gives back unfinished."""
        ...

    async def cancel(self, job_id: str) -> JobRecord | None:
        """QUEUED or RUNNING -> CANCELLED; a final job stays as it is. None when unknown."""
        ...

    async def list_jobs(
        self, limit: int, state: JobState | None = None, principal: str | None = None
    ) -> list[JobRecord]:
        """Newest first; only ``principal``'s jobs when it is given."""
        ...

    def watch(self, job_id: str) -> AsyncGenerator[JobRecord, None]:
        """The record now, then each time it changes, ending after a final state.

        Yields nothing for an unknown job. A slow reader skips intermediate versions but
        always sees the latest, so progress read from it never goes down.
        """
        ...

    async def reclaim_orphans(self) -> list[JobRecord]:
        """RUNNING jobs whose owner's lease lapsed (a dead worker) -> QUEUED; returns them so
        the caller can queue them again."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    record: JobRecord
    spec: bytes
    audio: bytes | None
    result: bytes | None = None
    expires_at: float | None = None


class MemoryJobStore:
    """In-process records for the embedded backend; final jobs expire after ``ttl_s``.

    Queued jobs keep their uploaded audio in this process's memory until they run, so the
    audio held in all is capped (``max_audio_bytes``, jobs.max_queued_audio_mb): past it a
    submission gets RESOURCE_EXHAUSTED instead of growing the server without bound.
    """

    def __init__(self, ttl_s: float, max_audio_bytes: int = 0) -> None:
        self._ttl_s = ttl_s
        self._max_audio_bytes = max_audio_bytes
        self._entries: dict[str, _Entry] = {}
        self._changed = asyncio.Condition()

    # -- reads

    async def get(self, job_id: str) -> JobRecord | None:
        entry = self._live(job_id)
        return entry.record if entry else None

    async def spec(self, job_id: str) -> bytes | None:
        entry = self._live(job_id)
        return entry.spec if entry else None

    async def audio(self, job_id: str) -> bytes | None:
        entry = self._live(job_id)
        return entry.audio if entry else None

    async def result(self, job_id: str) -> bytes | None:
        entry = self._live(job_id)
        return entry.result if entry else None

    async def list_jobs(
        self, limit: int, state: JobState | None = None, principal: str | None = None
    ) -> list[JobRecord]:
        self._prune()
        records = [
            e.record
            for e in self._entries.values()
            if (state is None or e.record.state == state)
            and (principal is None or e.record.principal == principal)
        ]
        records.sort(key=lambda r: r.create_time, reverse=True)
        return records[: min(limit, MAX_LIST)]

    async def watch(self, job_id: str) -> AsyncGenerator[JobRecord, None]:
        entry = self._live(job_id)
        if entry is None:
            return
        seen = entry.record
        yield seen
        while not seen.terminal:
            await self._wait_for_change(job_id, seen.version)
            entry = self._live(job_id)
            if entry is None:
                return
            seen = entry.record
            yield seen

    # -- transitions

    async def create(
        self, record: JobRecord, spec: bytes, audio: bytes | None = None
    ) -> tuple[JobRecord, bool]:
        self._prune()
        existing = self._live(record.job_id)
        if existing is not None:
            return existing.record, False
        held = sum(len(e.audio) for e in self._entries.values() if e.audio)
        if audio and self._max_audio_bytes and held + len(audio) > self._max_audio_bytes:
            raise ResourceExhausted(
                f"queued jobs hold {held / MIB:.0f} MiB of audio in this server, and this one "
                f"would pass its limit of {self._max_audio_bytes / MIB:.0f} MiB "
                "(jobs.max_queued_audio_mb): retry when jobs have run, or use the celery backend",
                retry_after_s=5.0,
            )
        created = record.evolve(state=JobState.QUEUED, version=1)
        self._entries[record.job_id] = _Entry(created, spec, audio)
        await self._notify()
        return created, True

    async def start(self, job_id: str, owner: str) -> Started:
        entry = self._live(job_id)
        if entry is None:
            return Started(StartDecision.MISSING, None)
        record = entry.record
        if record.terminal:
            return Started(StartDecision.FINISHED, record)
        if record.state is JobState.RUNNING and record.owner != owner:
            return Started(StartDecision.DUPLICATE, record)
        await self._update(
            entry, state=JobState.RUNNING, owner=owner, attempts=record.attempts + 1
        )
        return Started(StartDecision.RUN, entry.record)

    async def progress(self, job_id: str, owner: str, progress: float) -> JobRecord | None:
        entry = self._live(job_id)
        if entry is None:
            return None
        record = entry.record
        if self._owned(record, owner) and progress > record.progress:
            await self._update(entry, progress=min(progress, 1.0))
        return entry.record

    async def heartbeat(self, job_id: str, owner: str) -> JobRecord | None:
        return await self.get(job_id)

    async def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        *,
        error: str = "",
        result: bytes | None = None,
    ) -> JobRecord | None:
        if state not in TERMINAL_STATES:
            raise ValueError(f"finish() needs a final state, not {state.name}")
        entry = self._live(job_id)
        if entry is None:
            return None
        if self._owned(entry.record, owner):
            progress = 1.0 if state is JobState.SUCCEEDED else entry.record.progress
            entry.result = result
            entry.audio = None
            entry.expires_at = time.time() + self._ttl_s
            await self._update(entry, state=state, error=error, owner="", progress=progress)
        return entry.record

    async def requeue(self, job_id: str, owner: str) -> bool:
        entry = self._live(job_id)
        if entry is None or not self._owned(entry.record, owner):
            return False
        await self._update(entry, state=JobState.QUEUED, owner="")
        return True

    async def cancel(self, job_id: str) -> JobRecord | None:
        entry = self._live(job_id)
        if entry is None:
            return None
        if not entry.record.terminal:
            entry.audio = None
            entry.expires_at = time.time() + self._ttl_s
            await self._update(entry, state=JobState.CANCELLED, owner="")
        return entry.record

    async def reclaim_orphans(self) -> list[JobRecord]:
        # In one process a job's owner cannot die without the store dying with it.
        return []

    async def close(self) -> None:
        self._entries.clear()

    # -- helpers

    @staticmethod
    def _owned(record: JobRecord, owner: str) -> bool:
        return record.state is JobState.RUNNING and record.owner == owner

    def _live(self, job_id: str) -> _Entry | None:
        entry = self._entries.get(job_id)
        if entry is not None and entry.expires_at is not None and entry.expires_at < time.time():
            del self._entries[job_id]
            return None
        return entry

    async def _wait_for_change(self, job_id: str, version: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version(job_id) != version)

    def _version(self, job_id: str) -> int:
        entry = self._entries.get(job_id)
        return entry.record.version if entry else -1

    def _prune(self) -> None:
        now = time.time()
        expired = [k for k, e in self._entries.items() if e.expires_at and e.expires_at < now]
        for job_id in expired:
            del self._entries[job_id]

    async def _update(self, entry: _Entry, **changes: object) -> None:
        entry.record = entry.record.evolve(
            **changes, update_time=time.time(), version=entry.record.version + 1
        )
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
