"""Plans the 30 s Whisper inputs ("windows") of a recording, from where the VAD hears speech.

Whisper reads at most 30 s at a time. Audio that fits is one window, as it is, and pays no
VAD pass: only true silence (no 32 ms frame louder than about -60 dBFS) is left undecoded,
since Whisper invents "Thank you." on silence. Longer audio
is cut where the bundled Silero VAD (faster-whisper's ``get_speech_timestamps``) hears
pauses: speech chunks of at most 30 s (a chunk that runs longer is cut at its last short
pause, or hard at 30 s), each with 0.4 s of context either side, packed in order into
windows of up to 30 s. Pauses longer than a second are left out of the windows: Whisper
tends to stop transcribing, or to invent words, after long silences, and leaving them out
also means fewer windows to decode.

A window keeps the spans of the recording it is made of, so the times Whisper gives within
it map back to times in the recording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
MAX_WINDOW_S = 30.0
#: Pauses shorter than this stay inside a speech chunk.
MIN_PAUSE_MS = 1000
#: Context kept before and after each speech chunk.
SPEECH_PAD_MS = 400
#: Silero speech probability that starts speech (its end threshold is 0.15 lower).
SPEECH_THRESHOLD = 0.5
#: Silero scores one probability per 512 samples (32 ms) at 16 kHz.
VAD_FRAME_SAMPLES = 512

Span = tuple[int, int]


@dataclass(frozen=True)
class Window:
    """One Whisper input: spans [start, end) of the recording's samples, played back to back."""

    spans: tuple[Span, ...]
    #: False when the VAD heard no speech in it (it need not be decoded).
    has_speech: bool = True

    @classmethod
    def whole(cls, start: int, end: int, *, has_speech: bool = True) -> Window:
        return cls(((start, end),), has_speech)

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]

    @property
    def length(self) -> int:
        """Samples in the window (the recording's time it covers may be longer)."""
        return sum(end - start for start, end in self.spans)

    @property
    def offset_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return self.length / SAMPLE_RATE

    def take(self, samples: np.ndarray) -> np.ndarray:
        if len(self.spans) == 1:
            return samples[self.start : self.end]
        return np.concatenate([samples[start:end] for start, end in self.spans])

    def after(self, local_s: float) -> Window:
        """The part of this window from ``local_s`` (window time) on."""
        position = round(max(local_s, 0.0) * SAMPLE_RATE)
        spans: list[Span] = []
        for start, end in self.spans:
            size = end - start
            if position < size:
                spans.append((start + position, end))
                position = 0
            else:
                position -= size
        if not spans:
            raise ValueError(f"{local_s} s is past the end of the window")
        return Window(tuple(spans), self.has_speech)

    def absolute_s(self, local_s: float, *, is_start: bool = False) -> float:
        """A time within the window as a time in the recording.

        A time on the seam of two spans belongs to the later span when it starts something
        and to the earlier when it ends something.
        """
        position = max(local_s * SAMPLE_RATE, 0.0)
        for index, (start, end) in enumerate(self.spans):
            size = end - start
            last = index == len(self.spans) - 1
            if position < size or (position == size and (not is_start or last)):
                return (start + position) / SAMPLE_RATE
            position -= size
        return self.end / SAMPLE_RATE


#: Audio up to this long is handled on the event loop (decoded from raw PCM, its windows
#: planned): a conversion or level check of ~0.1 ms, less than handing it to a thread
#: costs (the hand-off, the thread's turns at the GIL, the answer back to the loop), which
#: a burst of short commands pays per call.
INLINE_AUDIO_S = 4.0


async def plan_windows_async(samples: np.ndarray) -> list[Window]:
    """``plan_windows`` off the event loop, except for audio up to INLINE_AUDIO_S."""
    if len(samples) <= INLINE_AUDIO_S * SAMPLE_RATE:
        return plan_windows(samples)
    return await asyncio.to_thread(plan_windows, samples)


def plan_windows(samples: np.ndarray, *, max_window_s: float = MAX_WINDOW_S) -> list[Window]:
    """Windows for ``samples`` (16 kHz mono): see the module docstring."""
    total = len(samples)
    if total == 0:
        return []
    if total <= int(max_window_s * SAMPLE_RATE):
        return [Window.whole(0, total, has_speech=not is_silent(samples))]
    return pack(speech_chunks(samples, max_chunk_s=max_window_s), max_window_s=max_window_s)


#: RMS of the loudest 32 ms frame below which audio counts as silence (-60 dBFS).
SILENCE_RMS = 1e-3


def is_silent(samples: np.ndarray) -> bool:
    """No 32 ms frame of ``samples`` is louder than ``SILENCE_RMS`` (cheap; no model)."""
    usable = len(samples) - len(samples) % VAD_FRAME_SAMPLES
    frames = np.asarray(samples[:usable], np.float32).reshape(-1, VAD_FRAME_SAMPLES)
    if len(frames) == 0:
        return bool(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) < SILENCE_RMS)
    loudest = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)).max()
    return bool(loudest < SILENCE_RMS)


def speech_chunks(samples: np.ndarray, *, max_chunk_s: float = MAX_WINDOW_S) -> list[Span]:
    """Padded speech spans of at most ``max_chunk_s``, in order (faster-whisper's Silero VAD)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # imports onnxruntime

    options = VadOptions(
        threshold=SPEECH_THRESHOLD,
        min_silence_duration_ms=MIN_PAUSE_MS,
        speech_pad_ms=SPEECH_PAD_MS,
        max_speech_duration_s=max_chunk_s,
    )
    found = get_speech_timestamps(np.asarray(samples, dtype=np.float32), options)
    limit = int(max_chunk_s * SAMPLE_RATE)
    chunks: list[Span] = []
    for chunk in found:
        start, end = int(chunk["start"]), int(chunk["end"])
        while end - start > limit:  # the VAD keeps chunks below the limit; be certain
            chunks.append((start, start + limit))
            start += limit
        if end > start:
            chunks.append((start, end))
    return chunks


def pack(chunks: Sequence[Span], *, max_window_s: float = MAX_WINDOW_S) -> list[Window]:
    """Consecutive chunks into as few windows as fit, in order; touching chunks are joined."""
    limit = int(max_window_s * SAMPLE_RATE)
    windows: list[Window] = []
    spans: list[Span] = []
    size = 0
    for start, end in chunks:
        if end - start > limit:
            raise ValueError(f"chunk {start}..{end} is longer than a window")
        if spans and size + (end - start) > limit:
            windows.append(Window(tuple(spans)))
            spans, size = [], 0
        if spans and spans[-1][1] >= start:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            size = sum(e - s for s, e in spans)
        else:
            spans.append((start, end))
            size += end - start
    if spans:
        windows.append(Window(tuple(spans)))
    return windows


#: Frames scored below this count as pause (Silero's own end-of-speech threshold).
PAUSE_THRESHOLD = SPEECH_THRESHOLD - 0.15
#: When cutting a long stretch of speech, the cut is searched only after this much, so
#: that no window is wastefully short (each costs a full 30 s encoder pass).
MIN_WINDOW_S = 15.0


def cut_at_pauses(
    total_samples: int,
    probabilities: np.ndarray,
    *,
    max_window_s: float = MAX_WINDOW_S,
    min_window_s: float = MIN_WINDOW_S,
    frame_samples: int = VAD_FRAME_SAMPLES,
) -> list[Window]:
    """Cuts a stretch of scored audio into windows, each ending in the longest pause of its
    last part (streaming uses this rule for utterances that outgrow a window).

    ``probabilities[i]`` scores samples [i * frame_samples, (i + 1) * frame_samples). The
    search range of a window starting at s is [s + min_window_s, s + max_window_s]; among
    its runs of pause frames the longest wins (the later one on a tie, for fewer windows),
    and the cut falls at its middle. No pause frame in range: a hard cut at the maximum.
    """
    if total_samples <= 0:
        return []
    max_len = int(max_window_s * SAMPLE_RATE)
    min_len = min(int(min_window_s * SAMPLE_RATE), max_len)
    if max_len < frame_samples:
        raise ValueError("max_window_s must span at least one VAD frame")
    scores = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    windows: list[Window] = []
    start = 0
    while total_samples - start > max_len:
        end = _cut_point(scores, start, start + min_len, start + max_len, frame_samples)
        windows.append(
            Window.whole(start, end, has_speech=_any_speech(scores, start, end, frame_samples))
        )
        start = end
    windows.append(
        Window.whole(
            start,
            total_samples,
            has_speech=_any_speech(scores, start, total_samples, frame_samples),
        )
    )
    return windows


def _cut_point(
    scores: np.ndarray, start: int, earliest: int, latest: int, frame_samples: int
) -> int:
    # Only frames lying wholly inside [earliest, latest] may hold the cut.
    first = -(-earliest // frame_samples)
    last = min(latest // frame_samples, len(scores))  # exclusive
    best_len = 0
    best_mid = latest
    run_start: int | None = None
    for index in range(first, last + 1):
        pause = index < last and scores[index] < PAUSE_THRESHOLD
        if pause and run_start is None:
            run_start = index
        elif not pause and run_start is not None:
            length = index - run_start
            if length >= best_len:
                best_len = length
                best_mid = ((run_start + index) * frame_samples) // 2
            run_start = None
    if best_len == 0:
        return latest
    return max(start + 1, min(best_mid, latest))


def _any_speech(scores: np.ndarray, start: int, end: int, frame_samples: int) -> bool:
    first = start // frame_samples
    last = -(-end // frame_samples)
    scored = scores[first:last]
    # Audio the VAD never scored (a shorter score array) is assumed to hold speech.
    return bool(len(scored) < last - first or (scored >= SPEECH_THRESHOLD).any())
