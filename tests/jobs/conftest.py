"""Helpers shared by the job tests: recordings, a Jobs client, and watching a job."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from pathlib import Path

import grpc
import pytest

from speech.v1 import jobs_pb2, jobs_pb2_grpc, stt_pb2
from speech_platform.config import Settings
from tests.conftest import Clip
from tests.jobs.recordings import Recording, build_recording
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

FAST_CONFIG = stt_pb2.RecognitionConfig(beam_size=1, enable_word_time_offsets=True)
#: Results with many synthesized texts or ten minutes of words exceed gRPC's 4 MB default.
MESSAGE_LIMIT = 64 * 1024 * 1024


def jobs_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
        ],
    )


#: The embedded server's job audio limit, small enough to test cheaply.
MAX_AUDIO_BYTES = 20 * 1024 * 1024


def local_settings(file_roots: list[Path] | None = None) -> Settings:
    """An all-in-one server with the embedded (no Redis) jobs backend; file:// sources
    are read under ``file_roots`` only."""
    settings = server_settings(["stt", "tts", "jobs"])
    settings.jobs.file_roots = list(file_roots or [])
    settings.tts.engines = ["piper"]
    settings.jobs.backend = "local"
    settings.jobs.local_concurrency = 1
    settings.jobs.max_audio_bytes = MAX_AUDIO_BYTES
    # Small batches, so a job's windows finish in several steps (visible progress).
    settings.stt.batcher.max_batch_size = 2
    # Connections are recycled every few seconds, so watches outlive their connection as
    # they do in production (every 5 minutes there): clients must watch again.
    settings.server.max_connection_age_s = 2.0
    settings.server.max_connection_age_grace_s = 1.0
    return settings


@pytest.fixture(scope="package")
async def local_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    """Shared by the local-backend and CLI tests (models load once); the tests' tmp_path
    directories are under its one file root."""
    roots = [tmp_path_factory.getbasetemp()]
    async with running_server(local_settings(roots)) as running:
        yield running


@pytest.fixture(scope="session")
def make_recording(librivox_clips: list[Clip]) -> Callable[[float], Recording]:
    cache: dict[float, Recording] = {}

    def make(seconds: float) -> Recording:
        if seconds not in cache:
            cache[seconds] = build_recording(librivox_clips, seconds)
        return cache[seconds]

    return make


async def job_updates(
    stub: jobs_pb2_grpc.JobsStub,
    job_id: str,
    *,
    rewatch: bool = True,
    streams: list[int] | None = None,
) -> AsyncGenerator[jobs_pb2.Job, None]:
    """WatchJob's stream, as a client should read it: when the server recycles the
    connection (max connection age) the stream ends UNAVAILABLE, and watching again
    starts from the job's current state."""
    while True:
        call = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id))
        if streams is not None:
            streams.append(1)
        try:
            async for response in call:
                yield response.job
            return
        except grpc.aio.AioRpcError as error:
            if not rewatch or error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        finally:
            call.cancel()


async def watch_job(
    stub: jobs_pb2_grpc.JobsStub, job_id: str, timeout_s: float = 300.0, *, rewatch: bool = True
) -> list[jobs_pb2.Job]:
    """Every update the server streams until the job ends."""

    async def collect() -> list[jobs_pb2.Job]:
        return [job async for job in job_updates(stub, job_id, rewatch=rewatch)]

    return await asyncio.wait_for(collect(), timeout_s)


async def first_update(
    stub: jobs_pb2_grpc.JobsStub,
    job_id: str,
    predicate: Callable[[jobs_pb2.Job], bool],
    timeout_s: float = 300.0,
) -> jobs_pb2.Job:
    """The first streamed state of the job that satisfies ``predicate`` (event-driven)."""

    async def find() -> jobs_pb2.Job:
        async with contextlib.aclosing(job_updates(stub, job_id)) as updates:
            async for job in updates:
                if predicate(job):
                    return job
        raise AssertionError(f"job {job_id} ended without reaching the wanted state")

    return await asyncio.wait_for(find(), timeout_s)


def assert_monotonic_progress(updates: list[jobs_pb2.Job]) -> None:
    progress = [u.progress for u in updates]
    assert progress == sorted(progress), progress
    assert all(0.0 <= p <= 1.0 for p in progress)


def assert_transcript_timing(result: stt_pb2.TranscribeResponse, duration_s: float) -> None:
    """Segments and words in order, each inside the audio."""
    assert result.segments, "no segments"
    starts = [s.start_seconds for s in result.segments]
    assert starts == sorted(starts)
    for segment in result.segments:
        assert 0.0 <= segment.start_seconds <= segment.end_seconds <= duration_s + 0.01
    word_starts = [w.start_seconds for w in result.words]
    assert word_starts == sorted(word_starts)
    for word in result.words:
        assert 0.0 <= word.start_seconds <= word.end_seconds <= duration_s + 0.01


def normalise_words(text: str) -> list[str]:
    """Lower case, no punctuation, hyphens split, "Mr." spelled as the reference spells it."""
    words = re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()
    return ["mister" if w == "mr" else w for w in words]


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(
        jiwer.wer(" ".join(normalise_words(reference)), " ".join(normalise_words(hypothesis)))
    )


#: Whisper's timestamp step. Batched decoding is not bit-for-bit independent of which windows
#: share a batch: measured here, the word alignment of one window moved a word's end by
#: exactly one step when another window was in its batch. A rerun after a crash batches its
#: windows differently, so its times may differ by this much, and nothing else may differ.
TIME_STEP_S = 0.02


def transcript_differences(
    got: stt_pb2.TranscribeResponse,
    want: stt_pb2.TranscribeResponse,
    *,
    time_tolerance_s: float = 0.0,
) -> list[str]:
    """Readable differences between two transcripts (empty when they are the same).

    Texts, words and segment structure must match exactly; times within the tolerance;
    probabilities within 1e-3.
    """
    differences: list[str] = []

    def close(a: float, b: float, tolerance: float) -> bool:
        return abs(a - b) <= tolerance + 1e-6

    if got.text != want.text:
        differences.append(f"text: {got.text!r} != {want.text!r}")
    if len(got.segments) != len(want.segments) or len(got.words) != len(want.words):
        differences.append(
            f"counts: {len(got.segments)}/{len(got.words)} segments/words != "
            f"{len(want.segments)}/{len(want.words)}"
        )
    for a, b in zip(got.segments, want.segments, strict=False):
        same = (
            a.text == b.text
            and close(a.start_seconds, b.start_seconds, time_tolerance_s)
            and close(a.end_seconds, b.end_seconds, time_tolerance_s)
            and close(a.avg_logprob, b.avg_logprob, 1e-3)
            and close(a.no_speech_probability, b.no_speech_probability, 1e-3)
        )
        if not same:
            differences.append(f"segment {a.id}: {a} != {b}".replace("\n", " "))
    for index, (x, y) in enumerate(zip(got.words, want.words, strict=False)):
        same = (
            x.word == y.word
            and close(x.start_seconds, y.start_seconds, time_tolerance_s)
            and close(x.end_seconds, y.end_seconds, time_tolerance_s)
            and close(x.probability, y.probability, 1e-3)
        )
        if not same:
            differences.append(f"word {index}: {x} != {y}".replace("\n", " "))
    for field in ("language_code", "audio_duration_seconds", "model"):
        if getattr(got, field) != getattr(want, field):
            differences.append(f"{field}: {getattr(got, field)} != {getattr(want, field)}")
    return differences


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the test item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
