"""Several short windows of one batch decoded as ONE 30 s Whisper window.

Why: Whisper's encoder always runs on 3000 mel frames (30 s); shorter audio is padded with
silence, never shortened (Whisper degrades on shorter inputs). On a CPU the encoder is
most of a short window's cost, so a 4 s clip pays for 30 s of encoder compute, and
batching does not help (a batched encoder call costs what its windows cost one by one).
Laying several short items end to end, with a little silence between them, fills that
window with speech instead of padding: one encoder pass and one decode serve them all.

How: ``plan_bins`` groups items that can share a decode (same language, beam size and
prompt: the window is decoded once, with one prompt) and fills bins first-fit in arrival
order, each bin at most ``max_window_seconds`` long including the gaps. A bin of one is
not packed. ``lay_out`` builds the bin's audio. The engine decodes it with word timings
(the cross-attention alignment is closer to the audio than Whisper's timestamp tokens,
and every word is then given to exactly one item), and ``split_segments_by_item`` gives
each item its words (by the word's midpoint; a word in a gap goes to the nearer item),
cuts a segment that straddles a boundary at its words, and shifts times to the item's own
origin. Without words (the alignment gave none), a segment goes to the item it overlaps
most. The items a straddling segment touched are reported, so that the engine can
decode them again alone (see ``SplitReport.straddled``).

The language must be known before decoding (explicit, or implied by an English-only
model): detection on a packed window would give one language to all its items.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import numpy as np

SAMPLE_RATE = 16000
#: Languages written without spaces between words (a cut segment's words join without).
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


@dataclass(frozen=True)
class PackingPolicy:
    #: Only items at most this long are packed (longer ones fill a window well enough).
    max_item_seconds: float = 10.0
    #: Silence between two items: enough for Whisper to end a sentence and a segment.
    #: Measured on 16 short clips (tiny.en): 0.5 s gave mean WER 0.022-0.025, 0.75 s
    #: 0.045-0.057, 1.0 s 0.032-0.044 (unpacked: 0.078).
    gap_seconds: float = 0.5
    #: A packed window's longest audio, gaps included. Whisper tends to stop a few seconds
    #: before the end of a full 30 s window (it then dropped the last item, which had to be
    #: decoded again); with 26 s that did not happen in the same measurement.
    max_window_seconds: float = 26.0

    def __post_init__(self) -> None:
        if not 0 < self.max_item_seconds <= self.max_window_seconds <= 30.0:
            raise ValueError("need 0 < max_item_seconds <= max_window_seconds <= 30")
        if self.gap_seconds < 0:
            raise ValueError("gap_seconds must be >= 0")


@dataclass(frozen=True)
class Placement:
    """One item in a packed window: its index in the batch and where its audio lies."""

    index: int
    offset: float
    duration: float

    @property
    def end(self) -> float:
        return self.offset + self.duration


@dataclass(frozen=True)
class Bin:
    placements: tuple[Placement, ...]

    @property
    def duration(self) -> float:
        return self.placements[-1].end if self.placements else 0.0


def plan_bins(
    durations: Sequence[float],
    keys: Sequence[Hashable | None],
    policy: PackingPolicy,
) -> list[Bin]:
    """Bins of two or more items; an item with key None, too long, or alone is left out.

    First fit in arrival order within each key, so earlier items are not delayed behind
    later ones and times stay easy to follow in logs.
    """
    open_bins: dict[Hashable, list[list[Placement]]] = {}
    for index, (duration, key) in enumerate(zip(durations, keys, strict=True)):
        if key is None or not 0 < duration <= policy.max_item_seconds:
            continue
        bins = open_bins.setdefault(key, [])
        for placements in bins:
            offset = placements[-1].end + policy.gap_seconds
            if offset + duration <= policy.max_window_seconds:
                placements.append(Placement(index, round(offset, 6), duration))
                break
        else:
            bins.append([Placement(index, 0.0, duration)])
    return [
        Bin(tuple(placements))
        for bins in open_bins.values()
        for placements in bins
        if len(placements) > 1
    ]


def lay_out(
    samples: Sequence[np.ndarray], packed: Bin, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """The bin's audio: each item's samples at its offset, silence elsewhere."""
    total = round(packed.duration * sample_rate)
    audio = np.zeros(total, dtype=np.float32)
    for placement in packed.placements:
        item = np.asarray(samples[placement.index], dtype=np.float32)
        start = round(placement.offset * sample_rate)
        audio[start : start + len(item)] = item[: max(0, total - start)]
    return audio


class TimedWordLike(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def word(self) -> str: ...


class TimedSegmentLike(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def text(self) -> str: ...
    @property
    def words(self) -> tuple[Any, ...]: ...


SegmentT = TypeVar("SegmentT", bound=TimedSegmentLike)


@dataclass
class ItemSegments:
    """What one packed item got back, its times relative to its own start."""

    segments: list[Any]
    #: Where its transcribed speech ends (None: no text).
    text_end: float | None = None


@dataclass
class SplitReport:
    per_item: list[ItemSegments]
    #: Segments that spanned two or more items (cut at word times, or, without words,
    #: given whole to the item they overlap most).
    straddling: int = 0
    #: Positions (in ``placements``) of the items such segments touched. Whisper ends a
    #: segment at a second of silence, so one running across a gap means it lost track of
    #: the boundary (e.g. skipped a short item and stretched the next one's first words
    #: back over it): these items' words are suspect.
    straddled: set[int] = field(default_factory=set)


def owner_of(moment: float, packed: Bin) -> int:
    """Position in ``packed.placements`` of the item nearest to ``moment`` (inside wins)."""
    best, best_distance = 0, float("inf")
    for position, placement in enumerate(packed.placements):
        if placement.offset <= moment <= placement.end:
            return position
        distance = min(abs(moment - placement.offset), abs(moment - placement.end))
        if distance < best_distance:
            best, best_distance = position, distance
    return best


def split_segments_by_item(
    segments: Sequence[SegmentT], packed: Bin, *, language: str = "en"
) -> SplitReport:
    """Each item's segments (dataclass copies of the inputs), in the item's own time.

    ``language`` says how to rebuild the text of a segment cut at a boundary from its
    words (with spaces between them or not).
    """
    spaced = language not in UNSPACED_LANGUAGES
    per_item = [ItemSegments([]) for _ in packed.placements]
    straddling = 0
    straddled: set[int] = set()
    for segment in segments:
        if segment.words:
            groups = _words_by_item(segment.words, packed)
            if len(groups) > 1:
                straddling += 1
                straddled.update(position for position, _ in groups)
            for position, words in groups:
                placement = packed.placements[position]
                whole = len(groups) == 1
                text = segment.text if whole else _join([w.word for w in words], spaced)
                shifted = [_shift(w, placement) for w in words]
                # Segments are dataclasses (DecodedSegment); a Protocol cannot say so.
                piece = replace(  # type: ignore[type-var]
                    segment,
                    start=shifted[0].start,
                    end=shifted[-1].end,
                    text=text,
                    words=tuple(shifted),
                )
                per_item[position].segments.append(piece)
        else:
            overlaps = [
                max(0.0, min(segment.end, p.end) - max(segment.start, p.offset))
                for p in packed.placements
            ]
            if sum(1 for o in overlaps if o > 0) > 1:
                straddling += 1
                straddled.update(k for k, o in enumerate(overlaps) if o > 0)
            if max(overlaps) > 0:
                position = int(np.argmax(overlaps))
            else:
                position = owner_of((segment.start + segment.end) / 2, packed)
            per_item[position].segments.append(_shift(segment, packed.placements[position]))
    for item in per_item:
        if item.segments:
            item.text_end = max(s.end for s in item.segments)
    return SplitReport(per_item, straddling, straddled)


def _words_by_item(words: Sequence[Any], packed: Bin) -> list[tuple[int, list[Any]]]:
    groups: list[tuple[int, list[Any]]] = []
    for word in words:
        position = owner_of((word.start + word.end) / 2, packed)
        if groups and groups[-1][0] == position:
            groups[-1][1].append(word)
        else:
            groups.append((position, [word]))
    return groups


def _shift(timed: Any, placement: Placement) -> Any:
    """A copy with times moved to the item's origin and clamped into the item."""

    def moved(moment: float) -> float:
        return round(min(max(moment - placement.offset, 0.0), placement.duration), 3)

    start = moved(timed.start)
    return replace(timed, start=start, end=max(start, moved(timed.end)))


def _join(words: Sequence[str], spaced: bool) -> str:
    if spaced:
        return " " + " ".join(w.strip() for w in words)
    return "".join(w.strip() for w in words)
