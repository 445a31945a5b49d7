"""speech.v1 TextToSpeech messages to and from the TTS core's dataclasses.

The servicer uses these for the wire; the response cache keeps the very same messages
serialized (``RESULT_CODEC``, ``CHUNK_CODEC``), without the per-request flags (cache hit,
fallback), which the door and the core set on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from speech.v1 import tts_pb2
from speech_platform.cache import Codec
from speech_platform.priority import NORMAL, from_proto
from tts_service.audio_encoding import Encoding
from tts_service.results import SynthesisChunk, SynthesisRequest, SynthesisResult
from tts_service.timings import MarkTime, WordTime

_UNKNOWN_PRIORITY = "priority {value} is not a known Priority value"


def to_synthesis_request(
    message: tts_pb2.SynthesizeRequest | tts_pb2.StreamingSynthesizeRequest,
    timeout_s: float | None,
    caller: str | None = None,
) -> SynthesisRequest:
    request = synthesis_request(
        message.text,
        message.voice,
        int(message.tier),
        message.audio_config,
        disable_fallback=message.disable_fallback,
        priority=from_proto(int(message.priority), _UNKNOWN_PRIORITY),
        skip_cache=message.skip_cache,
        timeout_s=timeout_s,
        caller=caller,
    )
    return replace(
        request,
        enable_word_timings=message.enable_word_timings,
        marks=tuple((mark.name, mark.char_offset) for mark in message.marks),
        ssml=message.ssml,
    )


def text_stream_request(
    config: tts_pb2.TextStreamConfig, timeout_s: float | None, caller: str | None = None
) -> SynthesisRequest:
    """The request every sentence of a StreamingSynthesizeText call is checked as (its text
    is each sentence's)."""
    return synthesis_request(
        "",
        config.voice,
        int(config.tier),
        config.audio_config,
        disable_fallback=config.disable_fallback,
        priority=from_proto(int(config.priority), _UNKNOWN_PRIORITY),
        skip_cache=True,
        timeout_s=timeout_s,
        caller=caller,
        enable_word_timings=config.enable_word_timings,
    )


def synthesis_request(
    text: str,
    voice: str,
    tier: int,
    audio: tts_pb2.AudioConfig,
    *,
    disable_fallback: bool = False,
    priority: int = NORMAL,
    skip_cache: bool = False,
    timeout_s: float | None = None,
    caller: str | None = None,
    enable_word_timings: bool = False,
) -> SynthesisRequest:
    """A SynthesisRequest for one text with a speech.v1 AudioConfig (a Synthesize call's, or
    a bulk-synthesis job's for each of its texts)."""
    return SynthesisRequest(
        text=text,
        voice=voice,
        tier=tier,
        encoding=int(audio.encoding),
        sample_rate_hertz=audio.sample_rate_hertz,
        speaking_rate=audio.speaking_rate,
        volume_gain_db=audio.volume_gain_db,
        disable_fallback=disable_fallback,
        priority=priority,
        skip_cache=skip_cache,
        timeout_s=timeout_s,
        caller=caller,
        enable_word_timings=enable_word_timings,
    )


def words_to_proto(words: Sequence[WordTime]) -> list[tts_pb2.WordTiming]:
    return [
        tts_pb2.WordTiming(
            word=w.word,
            start_char=w.start,
            end_char=w.end,
            start_seconds=w.start_s,
            end_seconds=w.end_s,
        )
        for w in words
    ]


def words_from_proto(messages: Sequence[tts_pb2.WordTiming]) -> tuple[WordTime, ...]:
    return tuple(
        WordTime(m.word, m.start_char, m.end_char, m.start_seconds, m.end_seconds)
        for m in messages
    )


def marks_to_proto(marks: Sequence[MarkTime]) -> list[tts_pb2.MarkTiming]:
    return [
        tts_pb2.MarkTiming(name=m.name, time_seconds=m.time_s, char_offset=m.offset)
        for m in marks
    ]


def result_to_proto(result: SynthesisResult) -> tts_pb2.SynthesizeResponse:
    return tts_pb2.SynthesizeResponse(
        audio=result.audio,
        encoding=int(result.encoding),  # type: ignore[arg-type]
        sample_rate_hertz=result.sample_rate,
        audio_duration_seconds=result.duration_s,
        engine=result.engine,
        voice=result.voice,
        cache_hit=result.cache_hit,
        fallback=result.fallback,
        fallback_reason=result.fallback_reason,
        word_timings=words_to_proto(result.words),
        mark_timings=marks_to_proto(result.marks),
    )


def result_from_proto(message: tts_pb2.SynthesizeResponse) -> SynthesisResult:
    return SynthesisResult(
        audio=message.audio,
        encoding=Encoding(message.encoding),
        sample_rate=message.sample_rate_hertz,
        duration_s=message.audio_duration_seconds,
        engine=message.engine,
        voice=message.voice,
        words=words_from_proto(message.word_timings),
    )


def chunk_to_proto(chunk: SynthesisChunk) -> tts_pb2.StreamingSynthesizeResponse:
    return tts_pb2.StreamingSynthesizeResponse(
        audio=chunk.audio,
        sentence_index=chunk.index,
        text=chunk.text,
        encoding=int(chunk.encoding),  # type: ignore[arg-type]
        sample_rate_hertz=chunk.sample_rate,
        audio_duration_seconds=chunk.duration_s,
        engine=chunk.engine,
        voice=chunk.voice,
        cache_hit=chunk.cache_hit,
        fallback=chunk.fallback,
        fallback_reason=chunk.fallback_reason,
        start_seconds=chunk.start_s,
        word_timings=words_to_proto(chunk.words),
        mark_timings=marks_to_proto(chunk.marks),
    )


def chunk_from_proto(message: tts_pb2.StreamingSynthesizeResponse) -> SynthesisChunk:
    return SynthesisChunk(
        audio=message.audio,
        index=message.sentence_index,
        text=message.text,
        encoding=Encoding(message.encoding),
        sample_rate=message.sample_rate_hertz,
        duration_s=message.audio_duration_seconds,
        engine=message.engine,
        voice=message.voice,
        start_s=message.start_seconds,
        words=words_from_proto(message.word_timings),
    )


#: A whole synthesis in the response cache: its SynthesizeResponse, serialized.
RESULT_CODEC: Codec[SynthesisResult] = Codec(
    encode=lambda result: result_to_proto(result).SerializeToString(),
    decode=lambda data: result_from_proto(tts_pb2.SynthesizeResponse.FromString(data)),
)
#: One sentence of a stream in the response cache: its StreamingSynthesizeResponse.
CHUNK_CODEC: Codec[SynthesisChunk] = Codec(
    encode=lambda chunk: chunk_to_proto(chunk).SerializeToString(),
    decode=lambda data: chunk_from_proto(tts_pb2.StreamingSynthesizeResponse.FromString(data)),
)
