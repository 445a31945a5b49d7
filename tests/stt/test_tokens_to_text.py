"""Timestamp tokens to segments, and alignment paths to words (the real tiny.en tokenizer)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import tokenizers
from faster_whisper.tokenizer import Tokenizer

from stt_service.assets import model_path
from stt_service.segments import TimedTokens, split_segments
from stt_service.word_timing import words_from_alignment


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    hf = tokenizers.Tokenizer.from_file(str(model_path("tiny.en") / "tokenizer.json"))
    return Tokenizer(hf, multilingual=False)


def _ts(tokenizer: Tokenizer, seconds: float) -> int:
    return tokenizer.timestamp_begin + round(seconds / 0.02)


def test_segments_open_and_close_on_timestamps(tokenizer):
    first, second = tokenizer.encode(" Hello there."), tokenizer.encode(" How are you?")
    tokens = [
        _ts(tokenizer, 0.0),
        *first,
        _ts(tokenizer, 1.5),
        _ts(tokenizer, 1.7),
        *second,
        _ts(tokenizer, 3.0),
        tokenizer.eot,
    ]
    segments = split_segments(
        tokens, eot=tokenizer.eot, timestamp_begin=tokenizer.timestamp_begin, window_duration=4.0
    )
    assert segments == [
        TimedTokens(0.0, 1.5, tuple(first)),
        TimedTokens(1.7, 3.0, tuple(second)),
    ]
    assert tokenizer.decode(list(segments[1].tokens)) == " How are you?"


def test_an_unclosed_segment_runs_to_the_window_end(tokenizer):
    words = tokenizer.encode(" and then")
    tokens = [_ts(tokenizer, 2.0), *words]
    (segment,) = split_segments(
        tokens, eot=tokenizer.eot, timestamp_begin=tokenizer.timestamp_begin, window_duration=6.5
    )
    assert (segment.start, segment.end) == (2.0, 6.5)


def test_text_without_timestamps_spans_the_window(tokenizer):
    words = tokenizer.encode(" plain text")
    (segment,) = split_segments(
        words, eot=tokenizer.eot, timestamp_begin=tokenizer.timestamp_begin, window_duration=3.0
    )
    assert (segment.start, segment.end, segment.tokens) == (0.0, 3.0, tuple(words))


def test_times_are_clamped_to_the_window(tokenizer):
    words = tokenizer.encode(" late")
    tokens = [_ts(tokenizer, 4.0), *words, _ts(tokenizer, 9.0)]
    (segment,) = split_segments(
        tokens, eot=tokenizer.eot, timestamp_begin=tokenizer.timestamp_begin, window_duration=5.0
    )
    assert (segment.start, segment.end) == (4.0, 5.0)


def test_only_timestamps_give_no_segment(tokenizer):
    tokens = [_ts(tokenizer, 0.0), _ts(tokenizer, 1.0), tokenizer.eot]
    assert (
        split_segments(
            tokens,
            eot=tokenizer.eot,
            timestamp_begin=tokenizer.timestamp_begin,
            window_duration=2.0,
        )
        == []
    )


@dataclass
class AlignmentPath:
    """The shape of ctranslate2's WhisperAlignmentResult: (token index, frame) pairs."""

    alignments: list[tuple[int, int]]
    text_token_probs: list[float]


def _path(token_frames: list[int], end_frame: int) -> AlignmentPath:
    """A monotonic path reaching token i at token_frames[i] and end-of-text at end_frame."""
    pairs: list[tuple[int, int]] = []
    frames = [*token_frames, end_frame]
    for index, frame in enumerate(frames):
        following = frames[index + 1] if index + 1 < len(frames) else frame + 1
        pairs += [(index, f) for f in range(frame, max(following, frame + 1))]
    return AlignmentPath(pairs, [0.9] * len(token_frames))


def test_words_take_their_times_from_the_path(tokenizer):
    text = tokenizer.encode(" Mr. Smith went cold-hearted home.")
    pieces = [tokenizer.decode([t]) for t in text]
    # encoder frames are 20 ms: tokens start 0.2 s (10 frames) apart, after a 0.5 s lead-in
    frames = [25 + 10 * i for i in range(len(text))]
    words = words_from_alignment(
        tokenizer, text, _path(frames, frames[-1] + 10), window_duration=10.0
    )
    assert [w.word.strip() for w in words] == ["Mr.", "Smith", "went", "cold-hearted", "home."]
    assert "".join(w.word for w in words) == "".join(pieces)
    for before, after in itertools.pairwise(words):
        assert before.start <= before.end <= after.start
    smith = words[1]
    assert smith.start == pytest.approx(frames[pieces.index(" Smith")] / 50)
    assert all(w.probability == pytest.approx(0.9) for w in words)


def test_a_long_first_word_after_silence_is_trimmed(tokenizer):
    text = tokenizer.encode(" one two three four")
    # The path sits on the first token from frame 0 to 200 (4 s of silence, then "one").
    frames = [0, 200, 215, 230]
    words = words_from_alignment(tokenizer, text, _path(frames, 245), window_duration=6.0)
    assert [w.word.strip() for w in words] == ["one", "two", "three", "four"]
    assert words[0].end == pytest.approx(4.0)
    assert words[0].end - words[0].start <= 2 * 0.3 + 1e-6  # twice the median (0.3 s)


def test_no_text_gives_no_words(tokenizer):
    assert words_from_alignment(tokenizer, [], _path([], 0), window_duration=1.0) == []
