"""Long recordings for job tests, built from the real LibriVox clips (no synthetic speech).

The clips are joined with pauses of quiet room noise (not digital silence, which no real
recording has) until the wanted length; the transcript of the whole is therefore the
clips' reference texts in order, repeated.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tests.conftest import Clip

RATE = 16000


@dataclass(frozen=True)
class Recording:
    wav: bytes
    duration_s: float
    #: The reference words of every clip placed, in order.
    reference: str
    #: (start, end) seconds of each clip placed.
    spans: list[tuple[float, float]]


def read_clip(clip: Clip) -> np.ndarray:
    with wave.open(str(clip.path)) as source:
        assert source.getframerate() == RATE and source.getnchannels() == 1
        data = source.readframes(source.getnframes())
    return np.frombuffer(data, dtype="<i2")


def build_recording(clips: Sequence[Clip], seconds: float, pause_s: float = 1.2) -> Recording:
    """Clips in turn, a pause after each, until ``seconds`` are filled (never exceeded)."""
    rng = np.random.default_rng(7)
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    words: list[str] = []
    total = 0
    limit = int(seconds * RATE)
    pause = int(pause_s * RATE)
    index = 0
    while True:
        clip = clips[index % len(clips)]
        samples = read_clip(clip)
        if total + len(samples) + pause > limit:
            break
        spans.append((total / RATE, (total + len(samples)) / RATE))
        pieces += [samples, (rng.normal(0, 30, pause)).astype("<i2")]
        words.append(clip.reference)
        total += len(samples) + pause
        index += 1
    tail = limit - total
    pieces.append((rng.normal(0, 30, tail)).astype("<i2"))
    audio = np.concatenate(pieces)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(audio.tobytes())
    return Recording(buffer.getvalue(), len(audio) / RATE, " ".join(words), spans)
