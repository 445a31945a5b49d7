"""The embedded (no Redis) backend through the real gRPC API: the server's own engines
(tiny.en, Piper) run the jobs in-process, and synthesis results land in its memory cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from speech.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, stt_pb2, tts_pb2, tts_pb2_grpc
from tests.jobs.conftest import (
    FAST_CONFIG,
    MAX_AUDIO_BYTES,
    assert_monotonic_progress,
    assert_transcript_timing,
    first_update,
    job_updates,
    jobs_channel,
    watch_job,
    word_error_rate,
)
from tests.jobs.recordings import Recording
from tests.support.server import RunningServer

pytestmark = pytest.mark.slow

DONE = (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)


@pytest.fixture(scope="module")
async def jobs(local_server: RunningServer) -> AsyncIterator[jobs_pb2_grpc.JobsStub]:
    async with jobs_channel(local_server.address) as channel:
        yield jobs_pb2_grpc.JobsStub(channel)


async def submit(
    jobs: jobs_pb2_grpc.JobsStub, recording: Recording, job_id: str = ""
) -> jobs_pb2.Job:
    response = await jobs.SubmitTranscriptionJob(
        jobs_pb2.SubmitTranscriptionJobRequest(
            config=FAST_CONFIG, audio=recording.wav, job_id=job_id
        )
    )
    return response.job


async def test_transcription_job_runs_in_process(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording]
):
    recording = make_recording(100.0)
    job = await submit(jobs, recording)
    assert job.state == jobs_pb2.JOB_STATE_QUEUED and job.kind == jobs_pb2.JOB_KIND_TRANSCRIPTION
    updates = await watch_job(jobs, job.job_id)
    assert_monotonic_progress(updates)
    final = updates[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    assert final.progress == 1.0
    assert any(0.0 < u.progress < 1.0 for u in updates), "progress came in one jump"
    result = final.transcription
    assert result.audio_duration_seconds == pytest.approx(recording.duration_s, abs=0.01)
    assert_transcript_timing(result, recording.duration_s)
    assert word_error_rate(recording.reference, result.text) < 0.05
    fetched = (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.job_id))).job
    assert fetched.transcription == result
    listed = (await jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=10))).jobs
    assert job.job_id in [j.job_id for j in listed]
    succeeded = await jobs.ListJobs(
        jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_SUCCEEDED)
    )
    assert all(j.state == jobs_pb2.JOB_STATE_SUCCEEDED for j in succeeded.jobs)


async def test_a_client_chosen_id_makes_submit_idempotent(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording]
):
    recording = make_recording(20.0)
    first = await submit(jobs, recording, job_id="client-chosen_1")
    second = await submit(jobs, recording, job_id="client-chosen_1")
    assert first.job_id == second.job_id == "client-chosen_1"
    assert second.create_time == first.create_time
    final = (await watch_job(jobs, first.job_id))[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED
    # Submitting again after it ended returns the finished job; nothing runs twice.
    again = await submit(jobs, recording, job_id="client-chosen_1")
    assert again.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert again.transcription == final.transcription


async def test_cancel_a_running_job_and_the_one_queued_behind_it(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording]
):
    long_one = await submit(jobs, make_recording(240.0))
    behind = await submit(jobs, make_recording(100.0))
    # local_concurrency is 1: the second waits while the first runs.
    running = await first_update(
        jobs, long_one.job_id, lambda j: j.state == jobs_pb2.JOB_STATE_RUNNING and j.progress > 0
    )
    assert running.progress < 1.0
    queued = (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=behind.job_id))).job
    assert queued.state == jobs_pb2.JOB_STATE_QUEUED
    cancelled_queued = await jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=behind.job_id))
    assert cancelled_queued.job.state == jobs_pb2.JOB_STATE_CANCELLED
    cancelled = await jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=long_one.job_id))
    assert cancelled.job.state == jobs_pb2.JOB_STATE_CANCELLED
    final = (await watch_job(jobs, long_one.job_id))[-1]
    assert final.state == jobs_pb2.JOB_STATE_CANCELLED and final.progress < 1.0
    assert not final.HasField("transcription")
    # The runner is free again, and the cancelled job never came back to life.
    after = await submit(jobs, make_recording(20.0))
    assert (await watch_job(jobs, after.job_id))[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    for job_id in (long_one.job_id, behind.job_id):
        job = (await jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))).job
        assert job.state == jobs_pb2.JOB_STATE_CANCELLED


async def test_undecodable_audio_fails_the_job_with_a_reason(jobs: jobs_pb2_grpc.JobsStub):
    job = (
        await jobs.SubmitTranscriptionJob(
            jobs_pb2.SubmitTranscriptionJobRequest(audio=b"this is not audio at all" * 100)
        )
    ).job
    final = (await watch_job(jobs, job.job_id))[-1]
    assert final.state == jobs_pb2.JOB_STATE_FAILED
    assert "could not be decoded" in final.error


async def test_uri_source_reads_a_shared_file(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording], tmp_path
):
    recording = make_recording(20.0)
    path = tmp_path / "shared.wav"
    path.write_bytes(recording.wav)
    job = (
        await jobs.SubmitTranscriptionJob(
            jobs_pb2.SubmitTranscriptionJobRequest(config=FAST_CONFIG, uri=path.as_uri())
        )
    ).job
    final = (await watch_job(jobs, job.job_id))[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    assert word_error_rate(recording.reference, final.transcription.text) < 0.05


BAD_SUBMITS = {
    "no audio": (jobs_pb2.SubmitTranscriptionJobRequest(), "no audio"),
    "empty audio": (jobs_pb2.SubmitTranscriptionJobRequest(audio=b""), "no audio"),
    "over the limit": (
        jobs_pb2.SubmitTranscriptionJobRequest(audio=b"\0" * (MAX_AUDIO_BYTES + 1)),
        "at most",
    ),
    "malformed job id": (
        jobs_pb2.SubmitTranscriptionJobRequest(audio=b"RIFF", job_id="has space/slash"),
        "malformed",
    ),
    "job id too long": (
        jobs_pb2.SubmitTranscriptionJobRequest(audio=b"RIFF", job_id="x" * 65),
        "at most 64",
    ),
    "http uri": (
        jobs_pb2.SubmitTranscriptionJobRequest(uri="http://example.com/a.wav"),
        "not supported",
    ),
    "missing file": (
        jobs_pb2.SubmitTranscriptionJobRequest(uri="file:///nonexistent/dir/a.wav"),
        "cannot be used",
    ),
    "file uri naming a host": (
        jobs_pb2.SubmitTranscriptionJobRequest(uri="file://fileserver/share/a.wav"),
        "must not name a host",
    ),
    "relative file uri": (
        jobs_pb2.SubmitTranscriptionJobRequest(uri="file:relative.wav"),
        "absolute",
    ),
    "unknown model": (
        jobs_pb2.SubmitTranscriptionJobRequest(
            audio=b"RIFF", config=stt_pb2.RecognitionConfig(model="whisper-huge-9")
        ),
        "whisper-huge-9",
    ),
    "beam out of range": (
        jobs_pb2.SubmitTranscriptionJobRequest(
            audio=b"RIFF", config=stt_pb2.RecognitionConfig(beam_size=99)
        ),
        "beam_size",
    ),
    "raw audio without rate": (
        jobs_pb2.SubmitTranscriptionJobRequest(
            audio=b"\0\0" * 100,
            config=stt_pb2.RecognitionConfig(encoding=common_pb2.AUDIO_ENCODING_LINEAR16),
        ),
        "sample_rate_hertz",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SUBMITS))
async def test_bad_transcription_submits_are_invalid_argument(
    jobs: jobs_pb2_grpc.JobsStub, case: str
):
    request, message = BAD_SUBMITS[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.SubmitTranscriptionJob(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


async def test_unknown_and_malformed_job_ids(jobs: jobs_pb2_grpc.JobsStub):
    for call in (
        lambda i: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=i)),
        lambda i: jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=i)),
        lambda i: watch_job(jobs, i, timeout_s=10),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await call("no-such-job")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no-such-job" in unknown.value.details()
        for malformed in ("", "bad id!", "é"):
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await call(malformed)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as page:
        await jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=-1))
    assert page.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_server_survives_many_bad_requests_and_keeps_serving(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording]
):
    bad = [
        jobs.SubmitTranscriptionJob(jobs_pb2.SubmitTranscriptionJobRequest())
        for _ in range(20)
    ]
    outcomes = await asyncio.gather(*bad, return_exceptions=True)
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in outcomes)
    job = await submit(jobs, make_recording(20.0))
    assert (await watch_job(jobs, job.job_id))[-1].state in DONE


QUESTIONS = [
    "Tell me about a project you are proud of.",
    "Why do you want to work here?",
    "Describe a time you disagreed with a colleague.",
    "What did you learn from your last mistake?",
    "Where do you see yourself in five years?",
]


async def test_synthesis_job_lands_in_the_cache(
    local_server: RunningServer, jobs: jobs_pb2_grpc.JobsStub
):
    submitted = await jobs.SubmitSynthesisJob(
        jobs_pb2.SubmitSynthesisJobRequest(
            texts=QUESTIONS, voice="en_US-joe-medium", include_audio=True
        )
    )
    assert submitted.job.kind == jobs_pb2.JOB_KIND_SYNTHESIS
    updates = await watch_job(jobs, submitted.job.job_id)
    assert_monotonic_progress(updates)
    final = updates[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final.error
    result = final.synthesis
    assert (result.engine, result.voice) == ("piper", "en_US-joe-medium")
    assert result.encoding == common_pb2.AUDIO_ENCODING_WAV and result.sample_rate_hertz == 22050
    assert [item.index for item in result.items] == list(range(len(QUESTIONS)))
    assert [item.text for item in result.items] == QUESTIONS
    async with local_server.channel() as channel:
        tts = tts_pb2_grpc.TextToSpeechStub(channel)
        for item in result.items:
            assert not item.error and item.audio[:4] == b"RIFF"
            assert len(item.cache_key) == 64 and item.audio_duration_seconds > 0.5
            again = await tts.Synthesize(
                tts_pb2.SynthesizeRequest(text=item.text, voice="en_US-joe-medium")
            )
            assert again.cache_hit, item.text
            assert again.audio == item.audio


async def test_a_running_synthesis_job_can_be_cancelled(jobs: jobs_pb2_grpc.JobsStub):
    texts = [f"Question number {n}: what would you do differently next time?" for n in range(300)]
    job = (
        await jobs.SubmitSynthesisJob(
            jobs_pb2.SubmitSynthesisJobRequest(texts=texts, voice="en_US-joe-medium")
        )
    ).job
    await first_update(
        jobs, job.job_id, lambda j: j.state == jobs_pb2.JOB_STATE_RUNNING and j.progress > 0
    )
    await jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.job_id))
    final = (await watch_job(jobs, job.job_id))[-1]
    assert final.state == jobs_pb2.JOB_STATE_CANCELLED
    assert 0.0 < final.progress < 1.0


BAD_SYNTHESIS = {
    "no texts": (jobs_pb2.SubmitSynthesisJobRequest(), "texts is empty"),
    "blank text": (jobs_pb2.SubmitSynthesisJobRequest(texts=["fine", "  "]), "texts[1]"),
    "text too long": (jobs_pb2.SubmitSynthesisJobRequest(texts=["a" * 5001]), "5001"),
    "unknown voice": (
        jobs_pb2.SubmitSynthesisJobRequest(texts=["hello"], voice="en_XX-nobody"),
        "en_XX-nobody",
    ),
    "speaking rate": (
        jobs_pb2.SubmitSynthesisJobRequest(
            texts=["hello"], audio_config=tts_pb2.AudioConfig(speaking_rate=9.0)
        ),
        "speaking_rate",
    ),
    "audio for too many texts": (
        jobs_pb2.SubmitSynthesisJobRequest(texts=["hello"] * 201, include_audio=True),
        "include_audio is limited",
    ),
    "bad job id": (
        jobs_pb2.SubmitSynthesisJobRequest(texts=["hello"], job_id="no spaces"),
        "malformed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SYNTHESIS))
async def test_bad_synthesis_submits_are_invalid_argument(
    jobs: jobs_pb2_grpc.JobsStub, case: str
):
    request, message = BAD_SYNTHESIS[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.SubmitSynthesisJob(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


async def test_a_job_id_cannot_change_kind(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording]
):
    await submit(jobs, make_recording(20.0), job_id="kind-clash")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.SubmitSynthesisJob(
            jobs_pb2.SubmitSynthesisJobRequest(texts=["hello"], job_id="kind-clash")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transcription job" in caught.value.details()


async def test_watching_goes_on_across_recycled_connections(
    jobs: jobs_pb2_grpc.JobsStub, make_recording: Callable[[float], Recording], tmp_path
):
    """The server closes every connection after max_connection_age (2 s here); a watch
    broken off that way is resumed by watching again, and progress still never goes down."""
    path = tmp_path / "long.wav"
    path.write_bytes(make_recording(600.0).wav)
    job = (
        await jobs.SubmitTranscriptionJob(
            jobs_pb2.SubmitTranscriptionJobRequest(config=FAST_CONFIG, uri=path.as_uri())
        )
    ).job
    streams: list[int] = []
    updates: list[jobs_pb2.Job] = []

    async def follow() -> None:
        async for update in job_updates(jobs, job.job_id, streams=streams):
            updates.append(update)
            if len(streams) >= 3 and not update.progress >= 1.0:
                await jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.job_id))

    await asyncio.wait_for(follow(), 300)
    assert len(streams) >= 3
    assert updates[-1].state == jobs_pb2.JOB_STATE_CANCELLED
    assert_monotonic_progress(updates)
