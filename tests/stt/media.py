"""Audio for the STT tests: real recordings, and containers written with PyAV in memory."""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path

import av
import jiwer
import numpy as np

RATE = 16000


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit mono WAV as float32 in [-1, 1]."""
    with wave.open(str(path)) as reader:
        assert reader.getsampwidth() == 2 and reader.getnchannels() == 1
        pcm = reader.readframes(reader.getnframes())
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def read_raw16(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), "<i2").astype(np.float32) / 32768.0


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(to_pcm16(samples))
    return buffer.getvalue()


#: container -> (PyAV format, codec)
FORMATS = {
    "wav": ("wav", "pcm_s16le"),
    "flac": ("flac", "flac"),
    "mp3": ("mp3", "libmp3lame"),
    "ogg": ("ogg", "libopus"),
    "mulaw": ("mulaw", "pcm_mulaw"),
    "s16le": ("s16le", "pcm_s16le"),
    "matroska": ("matroska", "libopus"),
}


def encode(
    samples: np.ndarray,
    container: str,
    *,
    rate: int = RATE,
    out_rate: int | None = None,
    channels: np.ndarray | None = None,
) -> bytes:
    """Encodes mono ``samples`` at ``rate`` (or the planar ``channels`` array) with PyAV.

    ``out_rate`` resamples first (MP3 and Opus only take some rates).
    """
    fmt, codec_name = FORMATS[container]
    planes = np.asarray(channels if channels is not None else samples[None, :], np.float32)
    layout = {1: "mono", 2: "stereo"}[planes.shape[0]]
    target_rate = out_rate or rate
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as output:
        stream = output.add_stream(codec_name, rate=target_rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        codec_formats = stream.codec_context.codec.audio_formats
        sample_format = codec_formats[0].name if codec_formats else "s16"
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=target_rate)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planes), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(converted):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


def join_with_silence(clips: list[np.ndarray], gap_s: float) -> tuple[np.ndarray, list[tuple]]:
    """Clips one after another with silence between; also each clip's (start_s, end_s)."""
    gap = np.zeros(int(gap_s * RATE), np.float32)
    pieces: list[np.ndarray] = []
    spans = []
    position = 0
    for clip in clips:
        if pieces:
            pieces.append(gap)
            position += len(gap)
        spans.append((position / RATE, (position + len(clip)) / RATE))
        pieces.append(clip)
        position += len(clip)
    return np.concatenate(pieces), spans


def normalise(text: str) -> str:
    """Lower case, hyphens as spaces, no punctuation: what WER should compare."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>"))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])
