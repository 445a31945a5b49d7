"""Audio files for the client: 16-bit PCM in and out, and real-time pacing of a stream."""

from __future__ import annotations

import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SAMPLE_BYTES = 2


@dataclass(frozen=True)
class Pcm:
    """Signed 16-bit little-endian samples (what StreamingTranscribe takes as LINEAR16)."""

    data: bytes
    sample_rate: int
    channels: int = 1

    @property
    def seconds(self) -> float:
        return len(self.data) / (SAMPLE_BYTES * self.channels * self.sample_rate)


def read_pcm(path: Path, sample_rate: int | None = None, channels: int = 1) -> Pcm:
    """A 16-bit WAV file, or headerless s16le when ``sample_rate`` is given for it."""
    with path.open("rb") as file:
        is_wav = file.read(12)[8:12] == b"WAVE"
    if not is_wav:
        if sample_rate is None:
            raise ValueError(f"{path}: not a WAV file; give --sample-rate for raw s16le PCM")
        return Pcm(path.read_bytes(), sample_rate, channels)
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != SAMPLE_BYTES or wav.getcomptype() != "NONE":
            raise ValueError(f"{path}: streaming needs 16-bit PCM WAV")
        return Pcm(wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels())


def paced_chunks(
    pcm: Pcm,
    chunk_ms: int = 100,
    speed: float = 1.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_chunk: Callable[[float], None] | None = None,
) -> Iterator[bytes]:
    """``pcm`` in ``chunk_ms`` pieces, each released when a microphone would have captured it
    (``speed`` times real time; 0 = as fast as possible). ``on_chunk`` gets the seconds of
    audio in each piece (for a progress bar)."""
    bytes_per_s = SAMPLE_BYTES * pcm.channels * pcm.sample_rate
    step = SAMPLE_BYTES * pcm.channels * max(pcm.sample_rate * chunk_ms // 1000, 1)
    start = clock()
    for offset in range(0, len(pcm.data), step):
        chunk = pcm.data[offset : offset + step]
        if speed > 0:
            # A chunk is complete once its last sample has been "recorded".
            wait = (offset + len(chunk)) / bytes_per_s / speed - (clock() - start)
            if wait > 0:
                sleep(wait)
        yield chunk
        if on_chunk is not None:
            on_chunk(len(chunk) / bytes_per_s)


class WavWriter:
    """Writes 16-bit mono PCM to a WAV file as it arrives (the rate comes with the audio)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wav: wave.Wave_write | None = None
        self.frames = 0

    def write(self, pcm: bytes, sample_rate: int) -> None:
        if self._wav is None:
            # Held open across writes, closed by close(): a with-block cannot span calls.
            self._wav = wave.open(str(self._path), "wb")  # noqa: SIM115
            self._wav.setnchannels(1)
            self._wav.setsampwidth(SAMPLE_BYTES)
            self._wav.setframerate(sample_rate)
        self._wav.writeframes(pcm)
        self.frames += len(pcm) // SAMPLE_BYTES

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
