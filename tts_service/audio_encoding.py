"""From engine audio (float32 mono at the voice's rate) to the bytes a caller asked for.

One ``AudioPipeline`` per request applies the gain, resamples (libswresample through PyAV,
stateful, so sentence joins stay seamless) and encodes. Fed sentence by sentence it is the
streaming encoder: whatever each ``push`` returns, concatenated with ``finish``, is one valid
stream of the encoding. Raw PCM and mu-law need no framing; WAV starts with a header whose
size fields say "unknown" (the streaming convention) unless the whole audio is known; FLAC,
MP3 and Ogg/Opus are muxed by ffmpeg into an in-memory sink that is drained after every push.
"""

from __future__ import annotations

import enum
import io
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import numpy as np

from speech_platform.errors import InvalidArgument

if TYPE_CHECKING:
    import av
    from av.audio.codeccontext import AudioCodecContext


class Encoding(enum.IntEnum):
    """Output encodings; values match speech.v1.AudioEncoding."""

    LINEAR16 = 1
    MULAW = 2
    WAV = 3
    FLAC = 4
    MP3 = 5
    OGG_OPUS = 6


MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
MULAW_DEFAULT_RATE = 8000
#: Rates each codec can encode (libopus and LAME refuse others).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
MIN_SPEAKING_RATE, MAX_SPEAKING_RATE = 0.25, 4.0
MIN_GAIN_DB, MAX_GAIN_DB = -96.0, 16.0

OPUS_BIT_RATE = 32_000
MP3_BIT_RATE = 64_000
#: Ogg pages are cut at least this often (µs), so a pushed sentence leaves the muxer
#: promptly instead of waiting for a full one-second page.
OGG_PAGE_DURATION_US = 100_000
#: WAV size fields meaning "until the end of the stream".
_WAV_UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class OutputFormat:
    encoding: Encoding
    sample_rate: int


def resolve_output(encoding: int, sample_rate_hertz: int, native_rate: int) -> OutputFormat:
    """Validates a requested encoding and rate; 0 picks a rate that codec can take.

    WAV is the default encoding. Rate 0 keeps the voice's native rate, except for MULAW
    (telephony: 8 kHz) and Opus (the nearest rate Opus supports, at or above the native one).
    """
    try:
        chosen = Encoding(encoding) if encoding else Encoding.WAV
    except ValueError:
        names = ", ".join(e.name for e in Encoding)
        raise InvalidArgument(
            f"audio_config.encoding {encoding} is not supported; use one of {names}"
        ) from None
    rate = int(sample_rate_hertz)
    if rate == 0:
        if chosen == Encoding.MULAW:
            rate = MULAW_DEFAULT_RATE
        elif chosen == Encoding.OGG_OPUS:
            rate = next(r for r in OPUS_RATES if r >= min(native_rate, OPUS_RATES[-1]))
        else:
            rate = native_rate
    elif not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidArgument(
            f"audio_config.sample_rate_hertz must be 0 (the voice's own rate) or between "
            f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}; got {rate}"
        )
    allowed = {Encoding.OGG_OPUS: OPUS_RATES, Encoding.MP3: MP3_RATES}.get(chosen)
    if allowed is not None and rate not in allowed:
        raise InvalidArgument(
            f"audio_config.sample_rate_hertz {rate} is not possible with {chosen.name}; "
            f"use one of {', '.join(map(str, allowed))} (or 0)"
        )
    return OutputFormat(chosen, rate)


def validate_speaking_rate(value: float) -> float:
    """0 means 1.0; otherwise 0.25..4.0."""
    if value == 0:
        return 1.0
    if not (math.isfinite(value) and MIN_SPEAKING_RATE <= value <= MAX_SPEAKING_RATE):
        raise InvalidArgument(
            f"audio_config.speaking_rate must be between {MIN_SPEAKING_RATE} and "
            f"{MAX_SPEAKING_RATE} (or 0 for 1.0); got {value}"
        )
    return float(value)


def validate_gain_db(value: float) -> float:
    if not (math.isfinite(value) and MIN_GAIN_DB <= value <= MAX_GAIN_DB):
        raise InvalidArgument(
            f"audio_config.volume_gain_db must be between {MIN_GAIN_DB:g} and "
            f"{MAX_GAIN_DB:g} dB; got {value}"
        )
    return float(value)


# ---------------------------------------------------------------------------- samples


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    if gain_db == 0:
        return audio
    return (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")


def mulaw_encode(pcm: np.ndarray) -> bytes:
    """G.711 mu-law of 16-bit samples (the ITU reference algorithm, vectorised)."""
    samples = pcm.astype(np.int32)
    sign = (samples < 0).astype(np.int32) << 7
    magnitude = np.minimum(np.abs(samples), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """44-byte PCM WAV header; ``data_bytes=None`` writes the streaming "unknown" sizes."""
    if data_bytes is None:
        riff_size = data_size = _WAV_UNKNOWN_SIZE
    else:
        riff_size, data_size = 36 + data_bytes, data_bytes
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data_size)
    )


class Resampler:
    """Float32 mono from one rate to another, keeping filter state across pushes."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        if in_rate != out_rate:
            import av  # PyAV (17 MB resident) only for requests that need it
        self._resampler = (
            av.AudioResampler(format="flt", layout="mono", rate=out_rate)
            if in_rate != out_rate
            else None
        )

    def push(self, audio: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return audio.astype(np.float32, copy=False)
        if audio.size == 0:
            return np.zeros(0, np.float32)
        import av  # loaded already by __init__

        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1), format="flt",
            layout="mono",
        )
        frame.sample_rate = self.in_rate
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)


# ---------------------------------------------------------------------------- encoders


class Encoder(Protocol):
    def encode(self, pcm: np.ndarray) -> bytes:
        """Bytes for 16-bit samples (may hold some back until more arrive)."""

    def finish(self) -> bytes:
        """Everything still held back, plus any trailer."""


class _RawPcmEncoder:
    def encode(self, pcm: np.ndarray) -> bytes:
        return pcm.astype("<i2", copy=False).tobytes()

    def finish(self) -> bytes:
        return b""


class _MulawEncoder:
    def encode(self, pcm: np.ndarray) -> bytes:
        return mulaw_encode(pcm)

    def finish(self) -> bytes:
        return b""


class _StreamingWavEncoder:
    def __init__(self, sample_rate: int) -> None:
        self._header: bytes | None = wav_header(sample_rate, None)

    def encode(self, pcm: np.ndarray) -> bytes:
        header, self._header = self._header or b"", None
        return header + pcm.astype("<i2", copy=False).tobytes()

    def finish(self) -> bytes:
        header, self._header = self._header or b"", None
        return header


class _WholeWavEncoder:
    """Holds the samples so the header can carry the exact sizes."""

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._parts: list[bytes] = []

    def encode(self, pcm: np.ndarray) -> bytes:
        self._parts.append(pcm.astype("<i2", copy=False).tobytes())
        return b""

    def finish(self) -> bytes:
        data = b"".join(self._parts)
        return wav_header(self._rate, len(data)) + data


class _Sink:
    """A write-only, unseekable file for ffmpeg: muxers then write streamable output."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._buffer += chunk
        return len(chunk)

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class AvCodec(NamedTuple):
    """How ffmpeg makes one output: container format, codec, the codec's sample format,
    bit rate (0 = lossless)."""

    container_format: str
    codec: str
    sample_format: str
    bit_rate: int


_AV_CODECS: dict[Encoding, AvCodec] = {
    Encoding.FLAC: AvCodec("flac", "flac", "s16", 0),
    Encoding.MP3: AvCodec("mp3", "libmp3lame", "s16p", MP3_BIT_RATE),
    Encoding.OGG_OPUS: AvCodec("ogg", "libopus", "s16", OPUS_BIT_RATE),
}
#: AAC in ADTS framing (streamable), for front doors whose clients ask for AAC (the HTTP
#: API's response_format=aac); speech.v1 has no AAC encoding.
AAC_ADTS = AvCodec("adts", "aac", "fltp", 64_000)


class _AvEncoder:
    """FLAC, MP3, Ogg/Opus (or another ``AvCodec``) through ffmpeg.

    Streaming writes to an unseekable sink, drained after each push. A whole-file encode
    writes to a seekable buffer so muxers can go back and fill in totals (FLAC STREAMINFO
    sample count and MD5, the MP3 Xing/LAME header with its gapless-playback delays).
    """

    def __init__(self, spec: AvCodec, sample_rate: int, *, streaming: bool) -> None:
        container_format, codec, self._sample_format, bit_rate = spec
        # Frames go in as 16-bit PCM; PyAV converts them for a codec that takes floats.
        self._frame_format = self._sample_format if self._sample_format == "s16p" else "s16"
        self._streaming = streaming
        self._sink = _Sink()
        self._seekable = io.BytesIO()
        import av  # PyAV (17 MB resident) only for requests that need it

        options = {"flush_packets": "1"}
        if container_format == "ogg":
            options["page_duration"] = str(OGG_PAGE_DURATION_US)
        self._container = av.open(
            self._sink if streaming else self._seekable,
            mode="w",
            format=container_format,
            options=options,
        )
        self._stream: Any = self._container.add_stream(codec, rate=sample_rate)
        context = cast("AudioCodecContext", self._stream.codec_context)
        context.layout = "mono"
        context.format = self._sample_format
        if bit_rate:
            context.bit_rate = bit_rate
        self._rate = sample_rate
        self._samples = 0

    def _frame(self, pcm: np.ndarray) -> av.AudioFrame:
        import av  # loaded already by __init__

        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1),
            format=self._frame_format,
            layout="mono",
        )
        frame.sample_rate = self._rate
        frame.pts = self._samples
        self._samples += pcm.size
        return frame

    def _drain(self) -> bytes:
        return self._sink.take() if self._streaming else b""

    def encode(self, pcm: np.ndarray) -> bytes:
        if pcm.size:
            self._container.mux(self._stream.encode(self._frame(pcm)))
        return self._drain()

    def finish(self) -> bytes:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        if self._streaming:
            return self._sink.take()
        return self._seekable.getvalue()


def make_encoder(output: OutputFormat, *, streaming: bool) -> Encoder:
    if output.encoding == Encoding.LINEAR16:
        return _RawPcmEncoder()
    if output.encoding == Encoding.MULAW:
        return _MulawEncoder()
    if output.encoding == Encoding.WAV:
        if streaming:
            return _StreamingWavEncoder(output.sample_rate)
        return _WholeWavEncoder(output.sample_rate)
    return _AvEncoder(_AV_CODECS[output.encoding], output.sample_rate, streaming=streaming)


def streaming_encoder(spec: AvCodec, sample_rate: int) -> Encoder:
    """A streaming ffmpeg encoder of 16-bit mono PCM at ``sample_rate`` (see _AvEncoder)."""
    return _AvEncoder(spec, sample_rate, streaming=True)


# ---------------------------------------------------------------------------- pipeline


class AudioPipeline:
    """Gain, resampling and encoding for one request's audio."""

    def __init__(
        self, native_rate: int, output: OutputFormat, gain_db: float, *, streaming: bool
    ) -> None:
        self.output = output
        self._gain_db = gain_db
        self._resampler = Resampler(native_rate, output.sample_rate)
        self._encoder = make_encoder(output, streaming=streaming)
        #: Samples produced at the output rate so far.
        self.samples = 0

    def _pcm(self, audio: np.ndarray) -> np.ndarray:
        pcm = to_int16(audio)
        self.samples += pcm.size
        return pcm

    def push(self, audio: np.ndarray) -> bytes:
        """Bytes for one more piece of audio (float32 at the native rate)."""
        resampled = self._resampler.push(apply_gain(audio, self._gain_db))
        return self._encoder.encode(self._pcm(resampled))

    def finish(self) -> bytes:
        """The rest of the stream: resampler tail, encoder tail, trailer."""
        tail = self._resampler.flush()
        data = self._encoder.encode(self._pcm(tail)) if tail.size else b""
        return data + self._encoder.finish()

    @property
    def duration_s(self) -> float:
        return self.samples / self.output.sample_rate


def encode_whole(
    audio: np.ndarray, native_rate: int, output: OutputFormat, gain_db: float
) -> tuple[bytes, float]:
    """A complete file (or raw buffer) for audio known in full, and its duration."""
    pipeline = AudioPipeline(native_rate, output, gain_db, streaming=False)
    data = pipeline.push(audio)
    data += pipeline.finish()
    return data, pipeline.duration_s
