"""Decoded windows become stream results: times shifted to the stream, stability of interims."""

from __future__ import annotations

import pytest

from stt_service.streaming.results import (
    DecodedSpan,
    build_result,
    comparable_words,
    stability,
)
from stt_service.whisper_engine import DecodedSegment, DecodedWord, WindowResult


def test_stability_is_the_share_of_words_the_previous_interim_already_had() -> None:
    before = comparable_words("And Mr. John")
    now = comparable_words("and mr john Dashwood had")
    assert stability(before, now) == pytest.approx(3 / 5)
    assert stability([], now) == 0.0
    assert stability(now, comparable_words("How do you")) == 0.0
    assert stability(now, []) == 0.0


def test_times_are_shifted_to_the_stream_and_clamped_to_the_window() -> None:
    result = WindowResult(
        segments=(
            DecodedSegment(
                0.0,
                2.0,
                " He might even",
                -0.2,
                0.01,
                (DecodedWord("He", 0.1, 0.3, 0.9), DecodedWord("might", 0.3, 0.6, 0.8)),
            ),
            DecodedSegment(
                2.0, 9.0, " have been.", -0.3, 0.01, (DecodedWord("been.", 2.5, 9.0, 0.7),)
            ),
            DecodedSegment(3.0, 3.0, "  ", -0.3, 0.01),
        ),
        language="en",
        language_probability=1.0,
    )
    span = DecodedSpan(offset_s=10.0, duration_s=3.0, speech_start_s=10.3, speech_end_s=12.7)
    response = build_result(
        result, span, is_final=True, utterance_index=4, model="tiny.en", first_segment_id=7
    )
    assert response.text == "He might even have been."
    assert (response.start_seconds, response.end_seconds) == pytest.approx((10.3, 12.7))
    assert [s.id for s in response.segments] == [7, 8]  # the empty segment is left out
    assert [(s.start_seconds, s.end_seconds) for s in response.segments] == [
        pytest.approx((10.0, 12.0)),
        pytest.approx((12.0, 13.0)),  # 9.0 s lies past the 3 s window: clamped to it
    ]
    assert [w.word for w in response.words] == ["He", "might", "been."]
    assert response.words[0].start_seconds == pytest.approx(10.1)
    assert response.words[-1].end_seconds == pytest.approx(13.0)
    assert response.stability == 1.0 and response.utterance_index == 4
