"""The Transcriber (the API jobs and streaming reuse): long audio, options, deadlines."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import numpy as np
import pytest
import pytest_asyncio

from batcher import DeadlineExpired, Overloaded
from speech_platform.config import SttBatcherSettings, SttSettings
from speech_platform.errors import InvalidArgument, NotFound
from stt_service.options import TranscribeOptions
from stt_service.transcriber import Transcriber
from tests.stt.media import join_with_silence, wer

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module")
async def transcriber():
    settings = SttSettings(
        models=["tiny.en"],
        instances=2,
        cpu_threads=1,
        batcher=SttBatcherSettings(max_batch_size=4, max_queue_delay_ms=10, max_queue_size=64),
    )
    transcriber = Transcriber(settings)
    await transcriber.start()
    yield transcriber
    await transcriber.stop(10.0)


async def test_long_audio_is_windowed_with_absolute_times(transcriber, speech_clips):
    clips = speech_clips[:5] + speech_clips[:5]
    audio, spans = join_with_silence([c.samples for c in clips], gap_s=2.0)
    assert len(audio) / 16000 > 60
    progress: list[tuple[int, int]] = []
    observer = transcriber.model().observer
    before = sum(observer.batch_sizes.values())
    response = await transcriber.transcribe(
        audio,
        TranscribeOptions(word_timestamps=True),
        on_progress=lambda done, total: progress.append((done, total)),
    )
    total = progress[-1][1]
    assert total >= 2
    assert progress == [(k, total) for k in range(1, total + 1)]
    # The windows of this one request were decoded in fewer batches than windows.
    assert sum(observer.batch_sizes.values()) - before < total

    reference = " ".join(c.reference for c in clips)
    print(
        f"long audio ({len(audio) / 16000:.1f} s, {total} windows) WER:",
        wer(reference, response.text),
    )
    assert wer(reference, response.text) <= 0.15
    assert response.audio_duration_seconds == pytest.approx(len(audio) / 16000, abs=1e-3)
    assert response.language_code == "en"

    # Every clip's own words are found inside that clip's time span.
    words = list(response.words)
    for word_before, word_after in itertools.pairwise(words):
        assert word_before.start_seconds <= word_after.start_seconds
        assert word_after.start_seconds <= word_after.end_seconds
    assert words[-1].end_seconds <= response.audio_duration_seconds
    marker = {
        "0870": "dashwood",
        "0880": "young",
        "0890": "selfish",
        "0920": "respectable",
        "0930": "himself",
    }
    for clip, (start, end) in zip(clips, spans, strict=True):
        hits = [
            w
            for w in words
            if marker[clip.name] in w.word.lower() and start - 0.5 <= w.start_seconds <= end + 0.5
        ]
        assert hits, f"{marker[clip.name]!r} not found within {start:.1f}-{end:.1f} s"
    for segment in response.segments:
        assert 0 <= segment.start_seconds <= segment.end_seconds <= len(audio) / 16000
    assert [s.id for s in response.segments] == list(range(len(response.segments)))


async def test_silence_gives_an_empty_transcript_without_decoding(transcriber):
    observer = transcriber.model().observer
    before = sum(observer.batch_sizes.values())
    response = await transcriber.transcribe(np.zeros(16000 * 5, np.float32), TranscribeOptions())
    assert response.text == "" and not response.segments
    assert (response.language_code, response.language_probability) == ("en", 1.0)
    assert sum(observer.batch_sizes.values()) == before


async def test_options_are_checked_against_the_loaded_models(transcriber):
    with pytest.raises(NotFound, match=r"'base' is not served here; available: 'tiny\.en'"):
        transcriber.resolve(TranscribeOptions(model="base"))
    with pytest.raises(InvalidArgument, match=r"English only.*'de-DE'"):
        transcriber.resolve(TranscribeOptions(language="de-DE"))
    with pytest.raises(InvalidArgument, match="not a BCP-47"):
        transcriber.resolve(TranscribeOptions(language="english!"))
    with pytest.raises(InvalidArgument, match=r"beam_size must lie in 1\.\.10"):
        transcriber.resolve(TranscribeOptions(beam_size=-2))
    with pytest.raises(InvalidArgument, match="initial_prompt is 2001 characters"):
        transcriber.resolve(TranscribeOptions(initial_prompt="x" * 2001))
    with pytest.raises(InvalidArgument, match="hotwords has 101 entries"):
        transcriber.resolve(TranscribeOptions(hotwords=("a",) * 101))
    resolved = transcriber.resolve(TranscribeOptions(language="EN-us", hotwords=(" x ", " ")))
    assert resolved.decode.language == "en"
    assert resolved.decode.beam_size == transcriber.settings.default_beam_size
    assert resolved.decode.hotwords == ("x",)


async def test_a_window_whose_deadline_passes_in_the_queue_is_never_decoded(
    transcriber, speech_clips
):
    resolved = transcriber.resolve(TranscribeOptions())
    observer = transcriber.model().observer
    batcher = transcriber.model().batcher
    # One decode teaches the batcher its compute rate (admission needs it).
    await transcriber.transcribe(speech_clips[5].samples, resolved)
    # Five long windows at once keep both instances busy for seconds.
    long_window = np.concatenate([c.samples for c in speech_clips[:4]])[: 25 * 16000]
    busy = asyncio.ensure_future(transcriber.decode_windows(resolved, [long_window] * 5))
    async with asyncio.timeout(30):  # a bounded wait for a condition, not a fixed sleep
        while batcher.running < 5:  # noqa: ASYNC110 - the batcher has no event for this
            await asyncio.sleep(0.005)
    # Admission (the default) sees the work ahead and refuses at once: nothing waits. (The
    # deadline is well under the estimate: admission takes running batches as half done,
    # and these have just started, so at 0.5 s the estimate, ~0.4 s, could admit it.)
    refused_before = observer.rejections["admission"]
    with pytest.raises(Overloaded):
        await transcriber.transcribe(speech_clips[1].samples, resolved, timeout_s=0.2)
    assert observer.rejections["admission"] == refused_before + 1
    # Without admission the request waits, and expires in the queue, never decoded.
    batcher.policy = replace(batcher.policy, admission=False)
    expired_before = observer.rejections["deadline"]
    try:
        with pytest.raises(DeadlineExpired):
            # Ample time to reach the queue, far less than the seconds the batch computes.
            await transcriber.transcribe(speech_clips[1].samples, resolved, timeout_s=0.2)
    finally:
        batcher.policy = replace(batcher.policy, admission=True)
    assert observer.rejections["deadline"] == expired_before + 1
    results = await busy
    assert len(results) == 5


async def test_the_rest_of_a_window_goes_ahead_with_the_text_so_far(transcriber, speech_clips):
    """When Whisper leaves a window's last segment open, the rest of the window is decoded
    from there, one priority level higher (the request already waited its turn once) and
    with the text so far as its prompt; the pieces do not overlap."""
    clip = speech_clips[0]
    resume_at = round(clip.duration_s / 2, 2)
    submitted: list[tuple[float, int, str]] = []
    first_piece: list[int] = []
    real_submit = transcriber._submit

    async def recording_submit(resolved, window, priority, deadline, *, options=None, caller=None):
        submitted.append(
            (len(window) / 16000, priority, (options or resolved.decode).initial_prompt)
        )
        result = await real_submit(
            resolved, window, priority, deadline, options=options, caller=caller
        )
        if len(submitted) == 1:  # as if Whisper had left a segment open at resume_at
            kept = tuple(s for s in result.segments if s.end <= resume_at) or result.segments[:1]
            first_piece.append(len(kept))
            return replace(result, segments=kept, resume_at=resume_at)
        return result

    transcriber._submit = recording_submit
    try:
        response = await transcriber.transcribe(clip.samples, TranscribeOptions(), priority=1)
    finally:
        del transcriber._submit
    assert len(submitted) == 2
    (whole_s, first, no_prompt), (rest_s, second, prompt) = submitted
    assert second == first + 1
    assert rest_s == pytest.approx(whole_s - resume_at, abs=0.01)
    assert no_prompt == "" and prompt
    assert response.text.startswith(prompt)
    # The second piece's times start where the first piece stopped.
    (kept,) = first_piece
    assert response.segments[kept:]
    # (float32 on the wire)
    assert all(s.start_seconds >= resume_at - 1e-3 for s in response.segments[kept:])
