"""Word start and end times from CTranslate2's cross-attention alignment.

``Whisper.align`` returns a monotonic path of (text token index, encoder frame) pairs;
the frame at which the path first reaches a token is when that token starts (encoder
frames are 20 ms apart). A word starts where its first token does and ends where the next
word (or the end-of-text token) starts. Punctuation is attached to its neighbouring word,
as a reader expects ("Mr." not "Mr" + ".").

The path always begins at frame 0 and tends to stretch a word over a pause before it, so
a word much longer than is usual for this speaker is shortened towards the speech: its
start is pulled in after a pause, its end before sentence punctuation.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: Encoder frames per second (Whisper's encoder halves the 100 Hz mel frames).
FRAMES_PER_SECOND = 50
#: A word may last at most this many times the median word, before trimming.
_MAX_DURATION_FACTOR = 2.0
#: The median used for trimming is capped: slow speakers should not license long words.
_MEDIAN_CAP_S = 0.7
_SENTENCE_END = (".", "!", "?", "\u3002", "\uff01", "\uff1f")  # and CJK full stops
_OPENING = set("\"'“¿¡([{«")
#: Languages written without spaces between words (the tokenizer splits them by character).
_UNSPACED = {"zh", "ja", "th", "lo", "my", "yue"}


class WordSplitter(Protocol):
    """faster_whisper.tokenizer.Tokenizer's word splitting (space- or unicode-based)."""

    eot: int

    def split_to_word_tokens(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]: ...


class Alignment(Protocol):
    """ctranslate2.models.WhisperAlignmentResult."""

    alignments: list[tuple[int, int]]
    text_token_probs: list[float]


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float
    end: float
    probability: float
    #: Index of the word's first token within the aligned text tokens.
    first_token: int


def words_from_alignment(
    splitter: WordSplitter,
    text_tokens: Sequence[int],
    alignment: Alignment,
    *,
    window_duration: float,
    language: str = "en",
) -> list[TimedWord]:
    """Timed words of one window's text; times relative to the window, within it."""
    if not text_tokens:
        return []
    words, word_tokens = splitter.split_to_word_tokens([*text_tokens, splitter.eot])
    token_starts = _token_start_times(alignment, len(text_tokens))
    probabilities = np.asarray(alignment.text_token_probs, dtype=np.float64)
    timed: list[TimedWord] = []
    first = 0
    for word, tokens in zip(words, word_tokens, strict=True):
        last = first + len(tokens)
        if first >= len(text_tokens):
            break  # the end-of-text token
        probability = float(probabilities[first:last].mean()) if last > first else 0.0
        start = min(token_starts[first], window_duration)
        end = min(token_starts[min(last, len(text_tokens))], window_duration)
        timed.append(TimedWord(word, start, max(end, start), probability, first))
        first = last
    return _trim_long_words(_join_pieces(timed, spaced=language not in _UNSPACED))


def _token_start_times(alignment: Alignment, count: int) -> list[float]:
    """Seconds at which the path first reaches each text token, and the end-of-text token."""
    starts: list[float | None] = [None] * (count + 1)
    for text_index, frame in alignment.alignments:
        if 0 <= text_index <= count and starts[text_index] is None:
            starts[text_index] = frame / FRAMES_PER_SECOND
    # A token the path skipped starts when the next reached one does (keeps monotony).
    following: float = 0.0
    filled: list[float] = [0.0] * (count + 1)
    for index in range(count, -1, -1):
        value = starts[index]
        if value is not None:
            following = value
        filled[index] = following
    for index in range(1, count + 1):  # enforce non-decreasing starts
        filled[index] = max(filled[index], filled[index - 1])
    return filled


def _is_punctuation(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and all(c in string.punctuation or c in "“”«»¿¡…" for c in stripped)


def _join_pieces(words: list[TimedWord], *, spaced: bool) -> list[TimedWord]:
    """Joins what a reader sees as one word.

    The tokenizer's split leaves trailing punctuation ("Mr" "."), the parts of hyphenated
    words ("cold" "-hearted") and opening quotes or brackets as separate pieces. In languages
    written with spaces every word starts with one, so a piece without one continues the
    word before it; elsewhere (Chinese, Japanese, Thai...) only punctuation is attached.
    """
    merged: list[TimedWord] = []
    prefix: TimedWord | None = None
    for word in words:
        if prefix is not None:
            word = TimedWord(
                prefix.word + word.word.lstrip(),
                word.start,
                word.end,
                min(prefix.probability, word.probability),
                prefix.first_token,
            )
            prefix = None
        punctuation = _is_punctuation(word.word)
        if punctuation and word.word.startswith(" ") and word.word.strip()[0] in _OPENING:
            prefix = word
            continue
        if merged and not word.word.startswith(" ") and (punctuation or spaced):
            previous = merged[-1]
            merged[-1] = TimedWord(
                previous.word + word.word,
                previous.start,
                # trailing punctuation takes no time; a word's second half does
                previous.end if punctuation else word.end,
                previous.probability
                if punctuation
                else min(previous.probability, word.probability),
                previous.first_token,
            )
            continue
        merged.append(word)
    if prefix is not None:
        merged.append(prefix)
    return merged


def _trim_long_words(words: list[TimedWord]) -> list[TimedWord]:
    durations = [w.end - w.start for w in words if w.end > w.start]
    if not durations:
        return words
    median = min(float(np.median(durations)), _MEDIAN_CAP_S)
    longest = median * _MAX_DURATION_FACTOR
    trimmed: list[TimedWord] = []
    for index, word in enumerate(words):
        start, end = word.start, word.end
        if end - start > longest:
            before = words[index - 1] if index else None
            if word.word.rstrip().endswith(_SENTENCE_END):
                end = start + longest  # trailing silence after a sentence
            elif before is None or before.word.rstrip().endswith(_SENTENCE_END):
                start = end - longest  # silence before the first word of a sentence
        trimmed.append(
            TimedWord(word.word, round(start, 3), round(end, 3), word.probability, word.first_token)
        )
    return trimmed
