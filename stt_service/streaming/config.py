"""The first message of a stream, checked once: what to decode, how, and when to answer.

A stream carries headerless audio only (LINEAR16 or MULAW with a sample rate): a container
cannot be decoded before it is complete, so WAV/FLAC/MP3/Ogg (or an unspecified encoding,
which means "detect the container") are refused with INVALID_ARGUMENT, as are a first
message without the config and out-of-range settings.

Finals decode with the request's options (beam, word times). Interims are provisional and
soon replaced, so they decode greedily (beam 1) without word alignment and one priority
level below the stream's finals: under load the batcher serves every final first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from speech.v1 import common_pb2, stt_pb2
from speech_platform.config import SttSettings
from speech_platform.errors import InvalidArgument
from stt_service.audio import MAX_CHANNELS, MAX_RAW_RATE, MIN_RAW_RATE, RAW_ENCODINGS
from stt_service.options import TranscribeOptions, batcher_priority
from stt_service.transcriber import ResolvedOptions, Transcriber

MIN_INTERIM_INTERVAL_MS, MAX_INTERIM_INTERVAL_MS = 100, 30_000
MIN_ENDPOINT_SILENCE_MS, MAX_ENDPOINT_SILENCE_MS = 100, 10_000


@dataclass(frozen=True)
class StreamPlan:
    """Everything a stream needs from its config, every default filled in."""

    encoding: int
    sample_rate: int
    channels: int
    interim_results: bool
    interim_interval_ms: int
    endpoint_silence_ms: int
    final: ResolvedOptions
    interim: ResolvedOptions
    #: Batcher priorities (higher is served first).
    final_priority: int
    interim_priority: int
    #: Streaming decodes (all streams) beyond which no new interim is admitted (gate.py).
    decode_capacity: int

    @property
    def model(self) -> str:
        return self.final.model.name


def plan_stream(
    request: stt_pb2.StreamingTranscribeRequest, transcriber: Transcriber, settings: SttSettings
) -> StreamPlan:
    """The plan for a stream from its first message; raises InvalidArgument or NotFound."""
    if request.WhichOneof("streaming_request") != "streaming_config":
        raise InvalidArgument(
            "the first StreamingTranscribeRequest must carry streaming_config "
            "(audio_content may follow only after it)"
        )
    streaming = request.streaming_config
    config = streaming.config
    encoding = _check_encoding(config.encoding)
    rate, channels = _check_format(config, encoding)
    interim_ms = _in_range(
        "interim_interval_ms",
        streaming.interim_interval_ms,
        settings.default_interim_interval_ms,
        MIN_INTERIM_INTERVAL_MS,
        MAX_INTERIM_INTERVAL_MS,
    )
    endpoint_ms = _in_range(
        "endpoint_silence_ms",
        streaming.endpoint_silence_ms,
        settings.default_endpoint_silence_ms,
        MIN_ENDPOINT_SILENCE_MS,
        MAX_ENDPOINT_SILENCE_MS,
    )
    priority = batcher_priority(config.priority)
    final = transcriber.resolve(TranscribeOptions.from_config(config))
    if final.separate_channels or final.quality_report:
        raise InvalidArgument(
            "config.enable_separate_recognition_per_channel and config.enable_quality_report "
            "are served by Transcribe only; a stream's channels are mixed down"
        )
    interim = ResolvedOptions(
        final.model,
        dataclasses.replace(final.decode, beam_size=1, word_timestamps=False, alternatives=0),
    )
    return StreamPlan(
        encoding=encoding,
        sample_rate=rate,
        channels=channels,
        interim_results=streaming.interim_results,
        interim_interval_ms=interim_ms,
        endpoint_silence_ms=endpoint_ms,
        final=final,
        interim=interim,
        final_priority=priority,
        interim_priority=priority - 1,
        decode_capacity=settings.stream_decode_capacity or max(1, final.model.instances - 1),
    )


def _check_encoding(encoding: int) -> int:
    if encoding not in common_pb2.AudioEncoding.values():
        raise InvalidArgument(f"config.encoding: unknown AudioEncoding value {encoding}")
    if encoding not in RAW_ENCODINGS:
        name = common_pb2.AudioEncoding.Name(encoding)
        raise InvalidArgument(
            f"config.encoding {name} cannot be streamed: send raw AUDIO_ENCODING_LINEAR16 or "
            "AUDIO_ENCODING_MULAW with sample_rate_hertz (containers go to Transcribe)"
        )
    return encoding


def _check_format(config: stt_pb2.RecognitionConfig, encoding: int) -> tuple[int, int]:
    name = common_pb2.AudioEncoding.Name(encoding).removeprefix("AUDIO_ENCODING_")
    rate = config.sample_rate_hertz
    if rate == 0:
        raise InvalidArgument(
            f"config.sample_rate_hertz is required for raw {name} audio (it has no header)"
        )
    if not MIN_RAW_RATE <= rate <= MAX_RAW_RATE:
        raise InvalidArgument(
            f"config.sample_rate_hertz must lie in {MIN_RAW_RATE}..{MAX_RAW_RATE}, got {rate}"
        )
    channels = config.audio_channel_count
    if not 0 <= channels <= MAX_CHANNELS:
        raise InvalidArgument(
            f"config.audio_channel_count must lie in 0..{MAX_CHANNELS} (0 means 1), got {channels}"
        )
    return rate, channels or 1


def _in_range(field: str, value: int, default: int, low: int, high: int) -> int:
    if value == 0:
        return default
    if not low <= value <= high:
        raise InvalidArgument(
            f"streaming_config.{field} must lie in {low}..{high} (0 = server default "
            f"{default}), got {value}"
        )
    return value
