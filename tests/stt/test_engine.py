"""The Whisper engine on its own: one batch holding windows of different requests."""

from __future__ import annotations

import numpy as np
import pytest

from speech_platform.errors import InvalidArgument
from stt_service.assets import model_path
from stt_service.options import DecodeOptions
from stt_service.whisper_engine import (
    WINDOW_FRAMES,
    EngineConfig,
    WhisperEngine,
    WindowItem,
    WindowResult,
    _Attempt,
    encoder_frames,
    seek_rule,
)
from tests.stt.media import wer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return WhisperEngine(EngineConfig(model_path("tiny.en"), cpu_threads=2))


def _text(result: WindowResult) -> str:
    return " ".join(s.text.strip() for s in result.segments)


def test_one_batch_transcribes_every_clip(engine, speech_clips):
    results = engine.run_batch(
        [WindowItem(c.samples, DecodeOptions(language="en", beam_size=5)) for c in speech_clips]
    )
    rates = []
    for clip, result in zip(speech_clips, results, strict=True):
        assert isinstance(result, WindowResult)
        assert (result.language, result.language_probability) == ("en", 1.0)
        rates.append(wer(clip.reference, _text(result)))
        print(f"engine batch WER {clip.name}: {rates[-1]:.3f}  {_text(result)!r}")
        for segment in result.segments:
            assert 0.0 <= segment.start <= segment.end <= clip.duration_s
    assert max(rates) <= 0.35
    assert sum(rates) / len(rates) <= 0.15


def test_mixed_options_and_a_bad_item_share_one_batch(engine, speech_clips):
    clip = speech_clips[1]  # "he was not an ill disposed young man"
    items = [
        WindowItem(clip.samples, DecodeOptions("en", beam_size=5, word_timestamps=True)),
        WindowItem(clip.samples, DecodeOptions("en", beam_size=1)),
        WindowItem(clip.samples, DecodeOptions("en", beam_size=5, hotwords=("ill-disposed",))),
        WindowItem(np.zeros(0, np.float32), DecodeOptions("en", beam_size=5)),
        WindowItem(clip.samples, DecodeOptions("de", beam_size=5)),
        WindowItem(
            speech_clips[4].samples,
            DecodeOptions("en", beam_size=3, initial_prompt="Sense and Sensibility."),
        ),
    ]
    results = engine.run_batch(items)
    assert len(results) == len(items)
    words, greedy, hinted, empty, german, prompted = results
    assert isinstance(empty, InvalidArgument) and "window must hold" in empty.message
    assert isinstance(german, InvalidArgument) and "'de' is not supported" in german.message
    for good in (words, greedy, hinted):
        assert isinstance(good, WindowResult)
        assert wer(clip.reference, _text(good)) <= 0.3
    assert isinstance(prompted, WindowResult)
    assert wer(speech_clips[4].reference, _text(prompted)) <= 0.2
    # The hotword spells the word the way the recording says it.
    assert "ill-disposed" in _text(hinted).lower()
    # Only the item that asked for word timings has them.
    assert [w.word for s in words.segments for w in s.words]
    assert not any(s.words for s in greedy.segments)


def test_word_times_are_ordered_and_inside_the_window(engine, speech_clips):
    clip = speech_clips[0]
    (result,) = engine.run_batch(
        [WindowItem(clip.samples, DecodeOptions("en", beam_size=5, word_timestamps=True))]
    )
    assert isinstance(result, WindowResult)
    words = [w for s in result.segments for w in s.words]
    spoken = " ".join(w.word for w in words)
    assert wer(clip.reference, spoken) <= 0.2
    previous_start = 0.0
    for word in words:
        assert previous_start <= word.start <= word.end <= clip.duration_s
        assert 0.0 <= word.probability <= 1.0
        previous_start = word.start
    # "dashwood" is said well after the start and well before the end of the 7 s clip.
    dashwood = next(w for w in words if "dashwood" in w.word.lower())
    assert 0.5 < dashwood.start < 3.0


def test_a_full_30_s_window_is_accepted_and_a_longer_one_refused(engine, speech_clips):
    long_window = np.concatenate([c.samples for c in speech_clips[:5]])[: 30 * 16000]
    too_long = np.zeros(30 * 16000 + 1, np.float32)
    full, refused = engine.run_batch(
        [
            WindowItem(long_window, DecodeOptions("en", beam_size=1)),
            WindowItem(too_long, DecodeOptions("en", beam_size=1)),
        ]
    )
    assert isinstance(full, WindowResult) and full.segments
    assert full.segments[-1].end <= 30.0
    assert isinstance(refused, InvalidArgument)


def test_each_window_is_encoded_at_its_own_length(engine, speech_clips):
    short, longer = speech_clips[1].samples, np.concatenate([c.samples for c in speech_clips[:3]])
    before, redone = engine.encoded_frames.copy(), engine.redone_at_full_length
    results = engine.run_batch(
        [WindowItem(x, DecodeOptions("en", beam_size=5)) for x in (short, longer, short)]
    )
    grown = engine.encoded_frames - before
    # 3 s + 1 s margin fits the 15 s bucket; 15.4 s + 1 s the 20 s one; what was in doubt
    # there went through the encoder once more at 30 s.
    assert (grown[1500], grown[2000]) == (2, 1)
    assert grown[WINDOW_FRAMES] == engine.redone_at_full_length - redone
    assert [r.encoder_frames for r in results if isinstance(r, WindowResult)][::2] == [1500, 1500]
    assert encoder_frames(len(short)) == 1500 and encoder_frames(len(longer)) == 2000


def test_a_sized_decode_in_doubt_is_decoded_again_at_30_s(engine, speech_clips, monkeypatch):
    clip = speech_clips[5]  # "go forward ten meters", 2.8 s
    item = WindowItem(clip.samples, DecodeOptions("en", beam_size=5))
    (sized,) = engine.run_batch([item])
    assert isinstance(sized, WindowResult) and sized.encoder_frames == 1500
    redone_before = engine.redone_at_full_length
    monkeypatch.setattr(_Attempt, "trusted_when_sized", property(lambda self: False))
    (full,) = engine.run_batch([item])
    assert isinstance(full, WindowResult) and full.encoder_frames == WINDOW_FRAMES
    assert engine.redone_at_full_length == redone_before + 1
    assert wer(clip.reference, _text(full)) <= 0.25


def _attempt(tokens: list[int], *, no_speech: float = 0.01, logprob: float = -0.2) -> _Attempt:
    closed = len(tokens) >= 2 and tokens[-1] >= 100 > tokens[-2]
    return _Attempt(tokens, logprob, no_speech, 1.2, closed)


def test_what_a_sized_decode_must_show_to_stand():
    assert _attempt([100, 1, 2, 150]).trusted_when_sized
    # Never closed (the shape of a repetition loop cut by the token limit).
    assert not _attempt([100, 1, 2, 1, 2, 1, 2]).trusted_when_sized
    # Closed, but unlikely text.
    assert not _attempt([100, 1, 2, 150], logprob=-1.5).trusted_when_sized
    # Silence may stand: the model hears no speech and is unsure of any text.
    assert _attempt([100], no_speech=0.9, logprob=-1.5).trusted_when_sized


def test_whisper_seek_rule():
    tb = 100  # timestamp tokens are >= 100 here; one step is 0.02 s
    # Closed last segment: the whole window is done.
    assert seek_rule([100, 1, 125, 125, 2, 150], tb, 5.0) == ([100, 1, 125, 125, 2, 150], None)
    # Open last segment after a boundary: keep up to it, resume at its time.
    assert seek_rule([100, 1, 125, 125, 2, 3], tb, 5.0) == ([100, 1, 125], 0.5)
    # A trailing pair of timestamps opens a segment with no text: resume there.
    assert seek_rule([100, 1, 200, 200], tb, 5.0) == ([100, 1, 200], 2.0)
    # No boundary at all: one segment, the window counts as done.
    assert seek_rule([100, 1, 2, 3], tb, 5.0) == ([100, 1, 2, 3], None)
    # A resume point too close to either end would not move on: done.
    assert seek_rule([100, 1, 110, 110, 2], tb, 5.0)[1] is None
    assert seek_rule([100, 1, 345, 345, 2], tb, 5.0)[1] is None
