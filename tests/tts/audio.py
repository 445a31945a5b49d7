"""Decoding what the TTS service returns, with PyAV (ffmpeg): an independent implementation."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import pytest

from tts_service.audio_encoding import Encoding

#: LAME adds up to one frame of padding plus its encoder delay when it cannot write a
#: gapless-playback header (streams): allowed on top of the exact duration.
MP3_SLACK_SAMPLES = 1152 + 1105


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float64 in [-1, 1]
    #: The rate the container or codec declares: for Ogg/Opus, the OpusHead input rate.
    declared_rate: int
    #: The rate PyAV decoded at (Opus always decodes at 48 kHz).
    decoded_rate: int

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.decoded_rate


def decode(data: bytes, encoding: Encoding, sample_rate: int) -> Decoded:
    """Decodes a response's audio; raw encodings need the rate the response states."""
    options = {"sample_rate": str(sample_rate), "ch_layout": "mono"}
    if encoding == Encoding.LINEAR16:
        container = av.open(io.BytesIO(data), mode="r", format="s16le", options=options)
    elif encoding == Encoding.MULAW:
        container = av.open(io.BytesIO(data), mode="r", format="mulaw", options=options)
    else:
        container = av.open(io.BytesIO(data), mode="r")
    with container:
        stream = container.streams.audio[0]
        declared = stream.codec_context.sample_rate
        if encoding == Encoding.OGG_OPUS:
            head = bytes(stream.codec_context.extradata or b"")
            assert head[:8] == b"OpusHead"
            declared = int.from_bytes(head[12:16], "little")
        frames = list(container.decode(stream))
    assert frames, "no audio decoded"
    assert {len(f.layout.channels) for f in frames} == {1}, "expected mono"
    samples = np.concatenate([_as_float(f) for f in frames])
    return Decoded(samples, declared, frames[0].sample_rate)


def _as_float(frame: av.AudioFrame) -> np.ndarray:
    array = frame.to_ndarray().reshape(-1)
    if array.dtype == np.int16:
        return array.astype(np.float64) / 32768.0
    if array.dtype == np.int32:
        return array.astype(np.float64) / 2147483648.0
    return array.astype(np.float64)


def band_energy_above(samples: np.ndarray, rate: int, hz: float) -> float:
    """Share of the signal's energy above ``hz`` (to tell at what rate audio was made)."""
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate)
    return float(spectrum[freqs > hz].sum() / max(spectrum.sum(), 1e-12))


def check_audio(response: Any, expected_rate: int | None = None) -> float:
    """Decodes a response's audio and checks it against what the response says of it."""
    encoding = Encoding(response.encoding)
    decoded = decode(response.audio, encoding, response.sample_rate_hertz)
    if expected_rate is not None:
        assert response.sample_rate_hertz == expected_rate
    assert decoded.declared_rate == response.sample_rate_hertz
    slack = 0.03 if encoding in (Encoding.MP3, Encoding.OGG_OPUS) else 1e-3
    assert decoded.duration_s == pytest.approx(response.audio_duration_seconds, abs=slack)
    return decoded.duration_s
