"""The Whisper engine on its own: one batch holding windows of different requests."""

from __future__ import annotations

import numpy as np
import pytest

from speech_platform.errors import InvalidArgument
from stt_service.assets import model_path
from stt_service.options import DecodeOptions
from stt_service.whisper_engine import EngineConfig, WhisperEngine, WindowItem, WindowResult
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
