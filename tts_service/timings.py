"""Word timings: when each word of the client's text is spoken, from the model's durations.

Both graphs compute how many frames each phoneme lasts (Piper's ``Ceil`` tensor, Kokoro's
``/encoder/Clip``; tools/assets exposes both as outputs), so the engines hand back, per
sentence, the phoneme words they spoke and when (``SpokenWord``): a cumulative sum, nothing
more. Here those are matched to the words of the normalised text and mapped back to the
client's characters (tts_service.alignment).

espeak-ng joins some words into one phoneme word ("on the" -> "ɔnðə", "would have" ->
"wʊdhɐv"), so the match is a monotonic alignment by length (dynamic programming over text
words and phoneme words, allowing a phoneme word to cover up to four text words, or a text
word up to three phoneme words); within a joined phoneme word the time is shared out in
proportion to the text words' letters (an estimate, the only one here). Spoken words made
from one source span ("$5" said "five dollars") become one timing for that span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tts_service.alignment import AlignedText

_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
_PUNCTUATION = frozenset(".,;:!?…\"'()[]-—")
MAX_JOINED = 4
MAX_SPLIT = 3
#: Half-width of the alignment's band around the diagonal, in words.
BAND = 8


@dataclass(frozen=True)
class SpokenWord:
    """A word as the engine spoke it: its phonemes and when, in seconds into its sentence."""

    phonemes: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class WordTime:
    """A word of the client's text, ``[start, end)`` in its characters, and when it is said."""

    word: str
    start: int
    end: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class MarkTime:
    name: str
    time_s: float
    offset: int


def word_groups(units: Sequence[str]) -> list[tuple[int, int]]:
    """Index ranges of the phoneme words in ``units`` (split at " ", at least one letter)."""
    groups: list[tuple[int, int]] = []
    start = 0
    for index, unit in enumerate([*units, " "]):
        if unit == " ":
            first, end = start, index
            while first < end and units[first] in _PUNCTUATION:
                first += 1
            while end > first and units[end - 1] in _PUNCTUATION:
                end -= 1  # a pause after the word is not the word
            if any(ch.isalpha() for u in units[first:end] for ch in u):
                groups.append((first, end))
            start = index + 1
    return groups


def spoken_words(
    frames: np.ndarray,
    spans: Sequence[tuple[int, int, str]],
    seconds_per_frame: float,
    offset_s: float = 0.0,
    limit_s: float = float("inf"),
) -> tuple[SpokenWord, ...]:
    """Each span's times: ``spans`` are (first, end, phonemes) positions into ``frames``;
    times are shifted by ``offset_s`` and kept at most ``limit_s`` (a trimmed tail)."""
    ends = np.cumsum(np.asarray(frames, dtype=np.float64).reshape(-1)) * seconds_per_frame
    words = []
    for first, end, phonemes in spans:
        start_s = (float(ends[first - 1]) if first > 0 else 0.0) + offset_s
        end_s = float(ends[end - 1]) + offset_s
        words.append(SpokenWord(phonemes, min(start_s, limit_s), min(end_s, limit_s)))
    return tuple(words)


def text_words(text: str, start: int = 0) -> list[tuple[int, int]]:
    """[start, end) of each word of ``text`` (offsets shifted by ``start``)."""
    return [(m.start() + start, m.end() + start) for m in _WORD.finditer(text)]


def align(
    words: Sequence[tuple[int, int]], text: str, spoken: Sequence[SpokenWord]
) -> list[tuple[float, float]]:
    """(start_s, end_s) for each text word, matching phoneme words by length."""
    if not words:
        return []
    if not spoken:
        return [(0.0, 0.0)] * len(words)
    lengths = [float(sum(ch.isalpha() for ch in text[a:b]) or 1) for a, b in words]
    sounds = [float(sum(ch.isalpha() for ch in w.phonemes) or 1) for w in spoken]
    n, m = len(words), len(spoken)
    inf = float("inf")
    # A band around the diagonal: joins and splits are local, so the path never strays far,
    # and the work stays linear in the sentence (a full table would be quadratic).
    band = BAND + abs(n - m)
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    move = [[(0, 0)] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        centre = i * m // max(n, 1)
        for j in range(max(0, centre - band), min(m, centre + band) + 1):
            here = cost[i][j]
            if here == inf:
                continue
            for di, dj in _MOVES:
                ni, nj = i + di, j + dj
                if ni > n or nj > m:
                    continue
                letters = sum(lengths[i:ni]) * 0.9  # about 0.9 phonemes a letter in English
                phones = sum(sounds[j:nj])
                step = abs(letters - phones) / max(letters, phones) + 0.15 * (di + dj - 2)
                if here + step < cost[ni][nj]:
                    cost[ni][nj] = here + step
                    move[ni][nj] = (di, dj)
    if cost[n][m] == inf:  # outside the band: share the sentence's time out by letters
        return _spread(lengths, spoken[0].start_s, spoken[-1].end_s)
    times: list[tuple[float, float]] = [(0.0, 0.0)] * n
    i, j = n, m
    while i > 0 or j > 0:
        di, dj = move[i][j]
        start_s, end_s = spoken[j - dj].start_s, spoken[j - 1].end_s
        times[i - di : i] = _spread(lengths[i - di : i], start_s, end_s)
        i, j = i - di, j - dj
    return times


_MOVES = [(1, 1)] + [(k, 1) for k in range(2, MAX_JOINED + 1)] + [
    (1, k) for k in range(2, MAX_SPLIT + 1)
]


def _spread(lengths: Sequence[float], start_s: float, end_s: float) -> list[tuple[float, float]]:
    """Shares [start_s, end_s) out in proportion to ``lengths``."""
    total = sum(lengths)
    times = []
    cursor = start_s
    for length in lengths:
        end = cursor + (end_s - start_s) * length / total
        times.append((cursor, end))
        cursor = end
    return times


def word_times(
    normalized: AlignedText,
    sentence_start: int,
    sentence: str,
    spoken: Sequence[SpokenWord],
    offset_s: float,
    source: str,
) -> list[WordTime]:
    """The timings of one sentence (found at ``sentence_start`` of ``normalized``), in the
    client's characters of ``source``; words made from one source span are merged."""
    words = text_words(sentence, sentence_start)
    times = align([(a - sentence_start, b - sentence_start) for a, b in words], sentence, spoken)
    merged: list[WordTime] = []
    for (a, b), (start_s, end_s) in zip(words, times, strict=True):
        first, last = normalized.source_span(a, b)
        if merged and first < merged[-1].end:  # the same source span ("$5" -> "five dollars")
            previous = merged[-1]
            first = min(first, previous.start)
            last = max(last, previous.end)
            merged[-1] = WordTime(
                source[first:last], first, last, previous.start_s, offset_s + end_s
            )
            continue
        merged.append(
            WordTime(source[first:last], first, last, offset_s + start_s, offset_s + end_s)
        )
    return merged


class SentenceTimer:
    """Word timings sentence after sentence of one text, as the audio adds up."""

    def __init__(
        self,
        normalized: AlignedText,
        source: str,
        sample_rate: int,
        *,
        offset_s: float = 0.0,
        char_offset: int = 0,
    ) -> None:
        self.normalized = normalized
        self.source = source
        self.sample_rate = sample_rate
        self.offset_s = offset_s
        self.char_offset = char_offset
        self._cursor = 0

    def next(self, sentence: str, samples: int, spoken: Sequence[SpokenWord]) -> list[WordTime]:
        """The words of ``sentence`` (the next one spoken, ``samples`` long at the engine's
        rate), in the source's characters shifted by ``char_offset``."""
        head = sentence.split(" ", 1)[0]
        found = self.normalized.text.find(head, self._cursor)
        start = found if found >= 0 else self._cursor
        self._cursor = start + len(head)
        times = word_times(self.normalized, start, sentence, spoken, self.offset_s, self.source)
        self.offset_s += samples / self.sample_rate
        if not self.char_offset:
            return times
        shift = self.char_offset
        return [
            WordTime(w.word, w.start + shift, w.end + shift, w.start_s, w.end_s) for w in times
        ]


def mark_times(
    marks: Sequence[tuple[str, int]], words: Sequence[WordTime], end_s: float
) -> list[MarkTime]:
    """A mark's time: the start of the first word at or after it (the end when none is)."""
    found = []
    for name, offset in marks:
        following = next((w for w in words if w.end > offset), None)
        time_s = end_s if following is None else following.start_s
        found.append(MarkTime(name, time_s, offset))
    return sorted(found, key=lambda m: (m.time_s, m.offset))
