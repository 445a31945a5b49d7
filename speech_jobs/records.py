"""The job record: what every backend stores about a job, and how it becomes a ``Job`` proto.

The record is small and flat on purpose (it lives in one Redis hash and travels as the JSON
of pub/sub events); the bulky parts - the request spec, the audio and the result - are kept
beside it and read only by whoever needs them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf import timestamp_pb2

from speech.v1 import jobs_pb2, stt_pb2


class JobState(enum.IntEnum):
    """The values of ``speech.v1.JobState``."""

    QUEUED = jobs_pb2.JOB_STATE_QUEUED
    RUNNING = jobs_pb2.JOB_STATE_RUNNING
    SUCCEEDED = jobs_pb2.JOB_STATE_SUCCEEDED
    FAILED = jobs_pb2.JOB_STATE_FAILED
    CANCELLED = jobs_pb2.JOB_STATE_CANCELLED

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobKind(enum.IntEnum):
    """The values of ``speech.v1.JobKind``."""

    TRANSCRIPTION = jobs_pb2.JOB_KIND_TRANSCRIPTION
    SYNTHESIS = jobs_pb2.JOB_KIND_SYNTHESIS

    @property
    def label(self) -> str:
        """The metric label and the name used in logs and CLIs."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    kind: JobKind
    state: JobState
    progress: float
    error: str
    #: Unix seconds.
    create_time: float
    update_time: float
    #: The worker running the job (empty unless RUNNING).
    owner: str = ""
    #: How many times a worker has started the job (more than one after a crash).
    attempts: int = 0
    #: Increases with every change, so watchers can drop stale or repeated events.
    version: int = 0
    #: The principal that submitted the job; only it (or an admin) sees the job.
    principal: str = ""
    #: The id its owner knows it by; ``job_id`` is the store's id, scoped to the owner
    #: (speech_jobs.ids.scoped_id). Empty for records made before ids were scoped.
    public_id: str = ""

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def to_fields(self) -> dict[str, str]:
        """Redis hash fields (every value a string)."""
        return {
            "job_id": self.job_id,
            "kind": str(int(self.kind)),
            "state": str(int(self.state)),
            "progress": repr(self.progress),
            "error": self.error,
            "create_time": repr(self.create_time),
            "update_time": repr(self.update_time),
            "owner": self.owner,
            "attempts": str(self.attempts),
            "version": str(self.version),
            "principal": self.principal,
            "public_id": self.public_id,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> JobRecord:
        """From a Redis hash or an event's JSON; bytes or str keys and values."""
        text = {_text(k): _text(v) for k, v in fields.items()}
        return cls(
            job_id=text["job_id"],
            kind=JobKind(int(text["kind"])),
            state=JobState(int(text["state"])),
            progress=float(text.get("progress") or 0.0),
            error=text.get("error", ""),
            create_time=float(text.get("create_time") or 0.0),
            update_time=float(text.get("update_time") or 0.0),
            owner=text.get("owner", ""),
            attempts=int(text.get("attempts") or 0),
            version=int(text.get("version") or 0),
            principal=text.get("principal", ""),
            public_id=text.get("public_id", ""),
        )

    def evolve(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def to_proto(record: JobRecord, result: bytes | None = None) -> jobs_pb2.Job:
    """The public view; ``result`` is the serialized result message of the job's kind."""
    job = jobs_pb2.Job(
        job_id=record.public_id or record.job_id,
        owner=record.principal,
        kind=int(record.kind),  # type: ignore[arg-type]
        state=int(record.state),  # type: ignore[arg-type]
        progress=min(max(record.progress, 0.0), 1.0),
        error=record.error,
        create_time=_timestamp(record.create_time),
        update_time=_timestamp(record.update_time),
    )
    if result:
        if record.kind is JobKind.TRANSCRIPTION:
            job.transcription.CopyFrom(stt_pb2.TranscribeResponse.FromString(result))
        else:
            job.synthesis.CopyFrom(jobs_pb2.SynthesisJobResult.FromString(result))
    return job
