"""Turns the audio bytes of a request into 16 kHz mono float32, or says exactly what is wrong.

Containers (WAV, FLAC, MP3, Ogg/Opus) are recognised by their content, never by the
declared encoding, since callers often mislabel files; raw LINEAR16 and MULAW have no
header, so they need the sample rate (and channel count) from the request. Everything is
decoded in memory with PyAV (bundled FFmpeg): nothing touches the disk.

Every input problem raises :class:`speech_platform.errors.InvalidArgument` with a message a
caller can act on; a truncated file is refused rather than silently transcribed in part.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import struct
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, replace

import av
import numpy as np

from speech.v1 import common_pb2
from speech_platform.config import BatcherSettings
from speech_platform.errors import InvalidArgument
from speech_platform.workpool import FairPool
from stt_service.windowing import INLINE_AUDIO_S

log = logging.getLogger(__name__)

TARGET_RATE = 16000
#: Container formats accepted by auto-detection (FFmpeg demuxer names).
CONTAINERS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "ogg": "Ogg"}
RAW_ENCODINGS = (common_pb2.AUDIO_ENCODING_LINEAR16, common_pb2.AUDIO_ENCODING_MULAW)
#: Sample rates and channel counts accepted, raw or in a container header. Real speech
#: never needs more; a header claiming more is how a few KB expand into gigabytes of
#: samples, so it is refused before a single frame is decoded.
MIN_RAW_RATE, MAX_RAW_RATE = 4000, 192000
MAX_CHANNELS = 8
#: Codecs decoded inside the accepted containers (FFmpeg decoder names; pcm_* too).
CODECS = frozenset({"flac", "mp3", "mp3float", "opus", "libopus", "vorbis", "libvorbis"})
#: Decoded audio may fall this much short of the declared duration (codec delay, rounding)
#: before the file counts as truncated: a fixed part plus a fraction of the declared length.
_SHORTFALL_S = 0.1
_SHORTFALL_FRACTION = 0.01
_ERROR_SHORTFALL_S = 0.02
#: Resampling in pieces keeps PyAV frames a sane size for long raw inputs.
_RESAMPLE_CHUNK = 1 << 18


@dataclass(frozen=True)
class DecodedAudio:
    """16 kHz mono float32 samples in [-1, 1], and where they came from."""

    samples: np.ndarray
    #: "WAV", "FLAC", "MP3", "Ogg", "LINEAR16" or "MULAW".
    source_format: str
    source_rate: int
    source_channels: int
    #: Each channel on its own, shape (channels, samples) at 16 kHz; only when decoded with
    #: ``keep_channels`` (per-channel recognition), else None. ``samples`` is their mean.
    channels: np.ndarray | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / TARGET_RATE

    @property
    def nbytes(self) -> int:
        """Memory the samples hold (the separate channels included)."""
        return self.samples.nbytes + (0 if self.channels is None else self.channels.nbytes)


#: Decoding runs here, never on asyncio's shared executor: at most one decode per core at
#: once (the memory budget bounds the bytes they hold; this bounds the CPU), a burst of
#: uploads cannot starve the other blocking work (TTS phonemizing and encoding), and callers
#: take turns, so one caller's uploads never queue another's behind them.
#: Its threads run at the models' CPU priority (batcher compute_nice's default), below the
#: event loop's.
_DECODERS = FairPool(
    workers=max(len(os.sched_getaffinity(0)), 1),
    name="audio-decode",
    nice=BatcherSettings.model_fields["compute_nice"].get_default(),
)


#: A request's audio: bytes, or a view of the message gRPC received (a large Transcribe's,
#: which is never copied on the event loop: stt_service/servicer.py). Everything on the loop
#: reads it by length, slices and struct; a container is copied to bytes once, in the pool.
AudioBytes = bytes | memoryview

#: Raw PCM up to this size is decoded on the event loop: INLINE_AUDIO_S of 16 kHz LINEAR16.
INLINE_DECODE_MAX_BYTES = int(INLINE_AUDIO_S * TARGET_RATE * 2)


def decodes_inline(data: AudioBytes, encoding: int, sample_rate_hertz: int) -> bool:
    """Whether ``decode_audio_async`` converts ``data`` on the loop: raw PCM at 16 kHz (no
    resampling), at most INLINE_DECODE_MAX_BYTES."""
    return (
        encoding in RAW_ENCODINGS
        and sample_rate_hertz == TARGET_RATE
        and len(data) <= INLINE_DECODE_MAX_BYTES
    )


async def decode_audio_async(
    data: AudioBytes,
    *,
    encoding: int = common_pb2.AUDIO_ENCODING_UNSPECIFIED,
    sample_rate_hertz: int = 0,
    audio_channel_count: int = 0,
    max_seconds: float | None = None,
    keep_channels: bool = False,
    caller: Hashable | None = None,
) -> DecodedAudio:
    """``decode_audio`` in the bounded decoding pool, for the event loop; ``caller`` takes
    its turn there with the other callers. Short raw PCM already at 16 kHz decodes on the
    loop (see ``decodes_inline``)."""
    decode = functools.partial(
        decode_audio,
        data,
        encoding=encoding,
        sample_rate_hertz=sample_rate_hertz,
        audio_channel_count=audio_channel_count,
        max_seconds=max_seconds,
        keep_channels=keep_channels,
    )
    if decodes_inline(data, encoding, sample_rate_hertz):
        return decode()
    return await _DECODERS.run(caller, decode)


def decode_audio(
    data: AudioBytes,
    *,
    encoding: int = common_pb2.AUDIO_ENCODING_UNSPECIFIED,
    sample_rate_hertz: int = 0,
    audio_channel_count: int = 0,
    max_seconds: float | None = None,
    keep_channels: bool = False,
) -> DecodedAudio:
    """Decodes a request's audio to 16 kHz mono float32.

    ``keep_channels`` also keeps each channel apart (``DecodedAudio.channels``), for
    per-channel recognition; the mono mix stays the default.

    ``encoding`` is a speech.v1 AudioEncoding value; for containers it is only a hint (the
    content decides). ``max_seconds`` stops decoding as soon as the audio is known to be
    longer, so a small compressed file cannot expand into hours of samples in memory.
    """
    check_audio_config(
        data,
        encoding=encoding,
        sample_rate_hertz=sample_rate_hertz,
        audio_channel_count=audio_channel_count,
    )
    if encoding in RAW_ENCODINGS:
        decoded = _decode_raw(
            data,
            encoding,
            sample_rate_hertz,
            audio_channel_count or 1,
            max_seconds,
            keep_channels,
        )
    else:
        decoded = _decode_container(data, max_seconds, keep_channels)
    if len(decoded.samples) == 0:
        raise InvalidArgument(f"audio ({decoded.source_format}) contains no samples")
    if max_seconds is not None and decoded.duration_s > max_seconds:
        raise _too_long(decoded.duration_s, max_seconds)
    return decoded


#: What decoding a container may make of each byte, at most for speech: 16-bit PCM becomes
#: float32 at its own rate, a mono mix and the 16 kHz result (about 8x); compressed audio
#: expands more per byte but is stopped at max_seconds, which bounds it (below).
CONTAINER_EXPANSION = 12
#: Copies of the 16 kHz float32 samples decoding may hold at once (native-rate pieces,
#: their concatenation, the resampled result).
_DECODE_COPIES = 4


def decoding_bytes(
    data: AudioBytes,
    *,
    encoding: int,
    sample_rate_hertz: int,
    audio_channel_count: int,
    max_seconds: float,
    keep_channels: bool = False,
) -> int:
    """A bound on the memory decoding ``data`` holds, with the bytes themselves, for the
    server's memory budget (speech_platform/budget.py); exact for raw PCM.

    ``keep_channels`` (per-channel recognition) keeps every channel at 16 kHz besides the
    mix: one more copy per channel (a container's channels are unknown before decoding,
    so it counts the most accepted)."""
    channels = max(audio_channel_count, 1)
    copies = 1
    if keep_channels:
        copies += channels if encoding in RAW_ENCODINGS else MAX_CHANNELS
    ceiling = int(max_seconds * TARGET_RATE * 4 * _DECODE_COPIES) * copies
    if encoding in RAW_ENCODINGS and sample_rate_hertz > 0:
        width = 2 if encoding == common_pb2.AUDIO_ENCODING_LINEAR16 else 1
        frames = len(data) // (width * channels)
        native = frames * 4 * (channels + 1)
        resampled = frames * TARGET_RATE // sample_rate_hertz * 4 * copies
        return len(data) + min(native + resampled, ceiling)
    return len(data) + min(len(data) * CONTAINER_EXPANSION, ceiling)


def raw_seconds(
    data: AudioBytes, *, encoding: int, sample_rate_hertz: int, audio_channel_count: int
) -> float | None:
    """The duration of raw PCM from its size alone (None for containers, whose length is
    known only once demuxed): what admission reserves before anything is decoded."""
    if encoding not in RAW_ENCODINGS or sample_rate_hertz <= 0:
        return None
    width = 2 if encoding == common_pb2.AUDIO_ENCODING_LINEAR16 else 1
    return len(data) / (width * max(audio_channel_count, 1) * sample_rate_hertz)


#: Chunks of a WAV header walked for its length (a hostile file of many tiny chunks
#: would otherwise cost the loop a walk of its whole size).
_WAV_CHUNKS_WALKED = 32


def known_seconds(
    data: AudioBytes,
    *,
    encoding: int,
    sample_rate_hertz: int,
    audio_channel_count: int,
    each_channel: bool = False,
) -> float | None:
    """The audio's duration before anything is decoded: raw PCM's from its size, a WAV's
    from its header (data chunk size over byte rate); None where only demuxing tells
    (other containers, a WAV written without its length). ``each_channel``: the seconds
    of all its channels, for channels recognised apart."""
    seconds = raw_seconds(
        data,
        encoding=encoding,
        sample_rate_hertz=sample_rate_hertz,
        audio_channel_count=audio_channel_count,
    )
    if seconds is not None:
        return seconds * max(audio_channel_count, 1) if each_channel else seconds
    header = _wav_header_length(data)
    if header is None:
        return None
    seconds, channels = header
    return seconds * max(channels, 1) if each_channel else seconds


def check_known_length(seconds: float | None, max_seconds: float) -> None:
    """Refuses audio known to be longer than ``max_seconds`` before it costs anything."""
    if seconds is not None and seconds > max_seconds:
        raise _too_long(seconds, max_seconds)


def _wav_header_length(data: AudioBytes) -> tuple[float, int] | None:
    """(seconds, channels) as a WAV's header declares them, or None."""
    if data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return None
    endian = "<" if data[:4] == b"RIFF" else ">"
    byte_rate = channels = 0
    offset = 12
    for _ in range(_WAV_CHUNKS_WALKED):
        if offset + 8 > len(data):
            return None
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack(endian + "I", data[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"fmt " and size >= 16 and body + 16 <= len(data):
            (channels,) = struct.unpack(endian + "H", data[body + 2 : body + 4])
            (byte_rate,) = struct.unpack(endian + "I", data[body + 8 : body + 12])
        elif chunk_id == b"data":
            if size in (0, 0xFFFFFFFF) or byte_rate <= 0:
                return None  # a streaming encoder's unknown length, or no format before it
            return size / byte_rate, channels
        offset = body + size + (size & 1)
    return None


def check_audio_config(
    data: AudioBytes, *, encoding: int, sample_rate_hertz: int, audio_channel_count: int
) -> None:
    """The checks that need no decoding; callers run them before a cache lookup too."""
    if encoding not in common_pb2.AudioEncoding.values():
        raise InvalidArgument(f"config.encoding: unknown AudioEncoding value {encoding}")
    if sample_rate_hertz < 0:
        raise InvalidArgument(f"config.sample_rate_hertz must be >= 0, got {sample_rate_hertz}")
    if not 0 <= audio_channel_count <= MAX_CHANNELS:
        raise InvalidArgument(
            f"config.audio_channel_count must lie in 0..{MAX_CHANNELS} (0 means 1), "
            f"got {audio_channel_count}"
        )
    if not data:
        raise InvalidArgument("audio is empty (0 bytes)")
    if encoding in RAW_ENCODINGS:
        name = common_pb2.AudioEncoding.Name(encoding).removeprefix("AUDIO_ENCODING_")
        if sample_rate_hertz == 0:
            raise InvalidArgument(
                f"config.sample_rate_hertz is required for raw {name} audio (it has no header)"
            )
        if not MIN_RAW_RATE <= sample_rate_hertz <= MAX_RAW_RATE:
            raise InvalidArgument(
                f"config.sample_rate_hertz must lie in {MIN_RAW_RATE}..{MAX_RAW_RATE} for raw "
                f"{name} audio, got {sample_rate_hertz}"
            )


def _too_long(seconds: float, max_seconds: float, *, at_least: bool = False) -> InvalidArgument:
    length = f"longer than {max_seconds:g} s" if at_least else f"{seconds:.1f} s long"
    return InvalidArgument(
        f"audio is {length}; this server accepts at most {max_seconds:g} s per "
        "Transcribe call (use the Jobs service for longer recordings)"
    )


# --------------------------------------------------------------------------- raw PCM


def _decode_raw(
    data: AudioBytes,
    encoding: int,
    rate: int,
    channels: int,
    max_seconds: float | None,
    keep_channels: bool = False,
) -> DecodedAudio:
    name = common_pb2.AudioEncoding.Name(encoding).removeprefix("AUDIO_ENCODING_")
    bytes_per_sample = 2 if encoding == common_pb2.AUDIO_ENCODING_LINEAR16 else 1
    frame_bytes = bytes_per_sample * channels
    if len(data) % frame_bytes:
        raise InvalidArgument(
            f"raw {name} audio is truncated: {len(data)} bytes is not a whole number of "
            f"{frame_bytes}-byte frames ({channels} channel(s) x {bytes_per_sample} byte(s))"
        )
    seconds = len(data) / frame_bytes / rate
    if max_seconds is not None and seconds > max_seconds:
        raise _too_long(seconds, max_seconds)  # before allocating any samples
    if encoding == common_pb2.AUDIO_ENCODING_LINEAR16:
        interleaved = np.frombuffer(data, dtype="<i2").astype(np.float32)
        interleaved *= 1.0 / 32768.0
    else:
        interleaved = mulaw_to_float(np.frombuffer(data, dtype=np.uint8))
    frames = interleaved.reshape(-1, channels)
    if keep_channels:
        return _with_channels(frames.T, rate, name, channels)
    # One channel is its own mix (a mean over a length-1 axis costs numpy ~3x the decode).
    mono = interleaved if channels == 1 else frames.mean(axis=1, dtype=np.float32)
    return DecodedAudio(resample_mono(mono, rate), name, rate, channels)


def _with_channels(planes: np.ndarray, rate: int, label: str, declared: int) -> DecodedAudio:
    """Audio whose channels are kept apart: each resampled on its own, and their mix."""
    separate = np.stack([resample_mono(plane, rate) for plane in planes]) if rate else planes
    return DecodedAudio(separate.mean(axis=0, dtype=np.float32), label, rate, declared, separate)


def mulaw_to_float(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes to float32 in [-1, 1] (the ITU-T expansion, bit by bit)."""
    inverted = ~codes.astype(np.uint8)
    sign = (inverted & 0x80) != 0
    exponent = ((inverted >> 4) & 0x07).astype(np.int32)
    mantissa = (inverted & 0x0F).astype(np.int32)
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    linear = np.where(sign, -magnitude, magnitude)
    return (linear / 32768.0).astype(np.float32)


def resample_mono(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at ``rate`` to mono float32 at 16 kHz (FFmpeg's swresample)."""
    if rate == TARGET_RATE:
        return np.ascontiguousarray(samples, dtype=np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
    pieces: list[np.ndarray] = []
    for start in range(0, len(samples), _RESAMPLE_CHUNK):
        chunk = np.ascontiguousarray(samples[start : start + _RESAMPLE_CHUNK], np.float32)
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


# --------------------------------------------------------------------------- containers


def _decode_container(
    data: AudioBytes, max_seconds: float | None, keep_channels: bool = False
) -> DecodedAudio:
    data = bytes(data)  # no copy of bytes; FFmpeg's reader and the truncation checks want it
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, EOFError, ValueError) as error:
        raise InvalidArgument(
            "audio could not be decoded: not a WAV, FLAC, MP3 or Ogg/Opus file "
            "(for headerless PCM set config.encoding to LINEAR16 or MULAW with "
            f"sample_rate_hertz) [{_reason(error)}]"
        ) from None
    with container:
        format_name = container.format.name
        label = next((CONTAINERS[n] for n in format_name.split(",") if n in CONTAINERS), None)
        if label is None:
            raise InvalidArgument(
                f"audio container {format_name!r} is not supported; "
                "send WAV, FLAC, MP3, Ogg/Opus, or raw LINEAR16/MULAW"
            )
        if not container.streams.audio:
            raise InvalidArgument(f"the {label} file holds no audio stream")
        stream = container.streams.audio[0]
        declared_s = _declared_seconds(stream)
        rate = int(stream.rate or 0)
        channels = int(stream.channels or 0)
        _check_header(label, stream.codec_context.name, rate, channels)
        pieces, native_rate, failure = _decode_stream_mono(
            container, stream, max_seconds, keep_channels
        )
    if keep_channels:
        planes = np.concatenate(pieces, axis=1) if pieces else np.zeros((1, 0), np.float32)
        decoded_s = planes.shape[1] / native_rate if native_rate else 0.0
        if max_seconds is not None and decoded_s > max_seconds:
            raise _too_long(decoded_s, max_seconds)
        _check_complete(label, data, decoded_s, declared_s, failure)
        decoded = _with_channels(planes, native_rate, label, channels or planes.shape[0])
        return replace(decoded, source_rate=rate or native_rate)
    samples_native = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    decoded_s = len(samples_native) / native_rate if native_rate else 0.0
    if max_seconds is not None and decoded_s > max_seconds:
        raise _too_long(decoded_s, max_seconds)
    _check_complete(label, data, decoded_s, declared_s, failure)
    return DecodedAudio(
        resample_mono(samples_native, native_rate) if native_rate else samples_native,
        label,
        rate or native_rate,
        channels,
    )


def _check_header(label: str, codec: str, rate: int, channels: int) -> None:
    """Refuses, from the header alone, what no speech needs: see MAX_RAW_RATE, CODECS."""
    if codec not in CODECS and not codec.startswith("pcm_"):
        raise InvalidArgument(
            f"the {label} file holds {codec!r} audio; accepted codecs are PCM, FLAC, MP3, "
            "Opus and Vorbis"
        )
    if rate > MAX_RAW_RATE:
        raise InvalidArgument(
            f"the {label} header declares {rate} Hz; at most {MAX_RAW_RATE} Hz is accepted"
        )
    if channels > MAX_CHANNELS:
        raise InvalidArgument(
            f"the {label} header declares {channels} channels; at most {MAX_CHANNELS} "
            "are accepted"
        )


def _decode_stream_mono(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    max_seconds: float | None,
    keep_channels: bool = False,
) -> tuple[list[np.ndarray], int, str | None]:
    """Decodes every frame, averaging channels at the native rate (or keeping the
    (channels, n) planes with ``keep_channels``).

    Returns the mono pieces, their rate and the first decoding error (or None). Averaging
    here, not in FFmpeg's rematrix (which scales stereo by 0.707 per channel), keeps levels
    the same as the raw-PCM path.
    """
    to_float = av.AudioResampler(format="fltp")
    pieces: list[np.ndarray] = []
    rate = 0
    total = 0
    failure: str | None = None
    for frame in _frames(container, stream):
        if isinstance(frame, str):
            failure = failure or frame
            continue
        for converted in to_float.resample(frame):
            planes = converted.to_ndarray()
            if rate and converted.sample_rate != rate:
                raise InvalidArgument("audio changes sample rate mid-stream; not supported")
            rate = converted.sample_rate
            pieces.append(_mix(planes, keep_channels))
            total += planes.shape[1]
        if max_seconds is not None and rate and total / rate > max_seconds + 1.0:
            raise _too_long(total / rate, max_seconds, at_least=True)
    for converted in to_float.resample(None):
        rate = rate or converted.sample_rate
        pieces.append(_mix(converted.to_ndarray(), keep_channels))
    return pieces, rate, failure


def _mix(planes: np.ndarray, keep_channels: bool) -> np.ndarray:
    if keep_channels:
        return np.asarray(planes, np.float32)
    return planes.mean(axis=0, dtype=np.float32)


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[av.AudioFrame | str]:
    """Decoded frames; a decoding error is yielded as its description and decoding goes on."""
    frames: Iterable[av.AudioFrame] = container.decode(stream)
    iterator = iter(frames)
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            return
        except (av.error.InvalidDataError, av.error.EOFError) as error:
            yield _reason(error)
            continue
        except av.error.FFmpegError as error:
            yield _reason(error)
            return
        frame.pts = None  # frames with odd timestamps still count as audio
        yield frame


def _declared_seconds(stream: av.AudioStream) -> float | None:
    """The duration the file's header promises (FLAC STREAMINFO, MP3 Xing/Info), if any."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return None


def _check_complete(
    label: str, data: bytes, decoded_s: float, declared_s: float | None, failure: str | None
) -> None:
    """Refuses files that end early: header promises more, or the container is cut off."""
    structural = _structural_truncation(label, data)
    if structural:
        raise InvalidArgument(f"{label} audio is truncated: {structural}")
    # Codec delay explains a small shortfall; after a decoding error it cannot.
    allowed = (
        _ERROR_SHORTFALL_S if failure else _SHORTFALL_S + _SHORTFALL_FRACTION * (declared_s or 0.0)
    )
    short = declared_s is not None and decoded_s < declared_s - allowed
    if short:
        raise InvalidArgument(
            f"{label} audio is truncated or corrupt: the header declares {declared_s:.2f} s "
            f"but only {decoded_s:.2f} s could be decoded" + (f" ({failure})" if failure else "")
        )
    if failure:
        if decoded_s == 0:
            raise InvalidArgument(f"{label} audio could not be decoded: {failure}")
        if declared_s is None:
            raise InvalidArgument(
                f"{label} audio is corrupt or truncated: decoding failed after "
                f"{decoded_s:.2f} s ({failure})"
            )
        log.info("tolerated a decoding error in complete audio", extra={"error": failure})


def _structural_truncation(label: str, data: bytes) -> str | None:
    if label == "WAV":
        return _wav_truncation(data)
    if label == "Ogg":
        return _ogg_truncation(data)
    return None


def _wav_truncation(data: bytes) -> str | None:
    """FFmpeg quietly shrinks a WAV's data chunk to the bytes present; compare with the header."""
    if data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return None  # RF64 and friends: trust the demuxer
    endian = "<" if data[:4] == b"RIFF" else ">"
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack(endian + "I", data[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"data":
            if size in (0, 0xFFFFFFFF):
                return None  # written by a streaming encoder that did not know the length
            present = len(data) - body
            if present < size:
                return f"the data chunk declares {size} bytes but only {present} are present"
            return None
        offset = body + size + (size & 1)
    return "no data chunk"


def _ogg_truncation(data: bytes) -> str | None:
    """A complete Ogg stream ends with a whole page flagged end-of-stream."""
    last = data.rfind(b"OggS")
    if last < 0 or last + 27 > len(data):
        return "the last Ogg page is cut off"
    header_type = data[last + 5]
    segments = data[last + 26]
    table_end = last + 27 + segments
    if table_end > len(data):
        return "the last Ogg page is cut off"
    body = sum(data[last + 27 : table_end])
    if table_end + body > len(data):
        return "the last Ogg page is cut off"
    if not header_type & 0x04:
        return "the stream has no end-of-stream page"
    return None


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(text)
