"""Turns raw audio chunks of any size into 16 kHz mono float32, one chunk at a time.

A live client cuts its audio wherever its buffer happens to end, so a LINEAR16 chunk may
stop in the middle of a sample (an odd byte count) or, with several channels, in the
middle of a frame. The bytes that do not make a whole frame are kept and put in front of
the next chunk. Resampling keeps its filter state between chunks (FFmpeg's swresample via
PyAV), so the output is the same as resampling the whole stream at once, minus nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import av
import numpy as np

from speech.v1 import common_pb2
from stt_service.audio import TARGET_RATE, mulaw_to_float


class PcmChunkDecoder:
    """Incremental decoder of one stream's raw LINEAR16 or MULAW bytes."""

    def __init__(self, encoding: int, sample_rate: int, channels: int = 1) -> None:
        if encoding not in (common_pb2.AUDIO_ENCODING_LINEAR16, common_pb2.AUDIO_ENCODING_MULAW):
            raise ValueError(f"raw encoding expected, got {encoding}")
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.channels = channels
        self._bytes_per_sample = 2 if encoding == common_pb2.AUDIO_ENCODING_LINEAR16 else 1
        self._frame_bytes = self._bytes_per_sample * channels
        self._remainder = b""
        self._resampler = (
            None
            if sample_rate == TARGET_RATE
            else av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
        )
        #: Input frames (per channel samples) consumed so far.
        self.frames_in = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes held back because they do not yet make a whole frame."""
        return len(self._remainder)

    def seconds_in(self) -> float:
        """Duration of the audio received so far, at the client's sample rate."""
        return self.frames_in / self.sample_rate

    def feed(self, chunk: bytes) -> np.ndarray:
        """The 16 kHz mono samples that ``chunk`` completes (possibly none)."""
        data = self._remainder + chunk if self._remainder else chunk
        whole = len(data) - len(data) % self._frame_bytes
        self._remainder = bytes(data[whole:])
        if whole == 0:
            return np.zeros(0, np.float32)
        self.frames_in += whole // self._frame_bytes
        view = memoryview(data)[:whole]
        if self.encoding == common_pb2.AUDIO_ENCODING_LINEAR16:
            interleaved = np.frombuffer(view, dtype="<i2").astype(np.float32) / 32768.0
        else:
            interleaved = mulaw_to_float(np.frombuffer(view, dtype=np.uint8))
        if self.channels == 1:
            mono = interleaved
        else:
            mono = interleaved.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return self._resample(mono)

    def flush(self) -> np.ndarray:
        """What the resampler still holds at the end of the stream (a partial frame is dropped)."""
        self._remainder = b""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return _concat(f.to_ndarray().reshape(-1) for f in self._resampler.resample(None))

    def _resample(self, mono: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return np.ascontiguousarray(mono, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(mono, np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        return _concat(f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame))


def _concat(pieces: Iterable[np.ndarray]) -> np.ndarray:
    parts = [np.asarray(p, np.float32) for p in pieces]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
