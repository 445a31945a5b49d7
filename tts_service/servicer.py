"""speech.v1.TextToSpeech over gRPC: translates messages to and from the Synthesizer.

Errors are raised, never set on the context: the shared interceptor maps them to status
codes (speech_platform.errors), so nothing here can answer UNKNOWN.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from speech.v1 import common_pb2, tts_pb2, tts_pb2_grpc
from speech_platform.errors import InvalidArgument
from tts_service.synthesizer import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    SynthesisRequest,
    Synthesizer,
)

_PRIORITIES: dict[int, int] = {
    common_pb2.PRIORITY_UNSPECIFIED: PRIORITY_NORMAL,
    common_pb2.PRIORITY_LOW: PRIORITY_LOW,
    common_pb2.PRIORITY_NORMAL: PRIORITY_NORMAL,
    common_pb2.PRIORITY_HIGH: PRIORITY_HIGH,
}


def _priority(value: int) -> int:
    try:
        return _PRIORITIES[value]
    except KeyError:
        raise InvalidArgument(f"priority {value} is not a known Priority value") from None


def to_synthesis_request(
    message: tts_pb2.SynthesizeRequest | tts_pb2.StreamingSynthesizeRequest,
    timeout_s: float | None,
) -> SynthesisRequest:
    audio = message.audio_config
    return SynthesisRequest(
        text=message.text,
        voice=message.voice,
        tier=int(message.tier),
        encoding=int(audio.encoding),
        sample_rate_hertz=audio.sample_rate_hertz,
        speaking_rate=audio.speaking_rate,
        volume_gain_db=audio.volume_gain_db,
        disable_fallback=message.disable_fallback,
        priority=_priority(int(message.priority)),
        skip_cache=message.skip_cache,
        timeout_s=timeout_s,
    )


class TextToSpeechServicer(tts_pb2_grpc.TextToSpeechServicer):
    def __init__(self, synthesizer: Synthesizer) -> None:
        self.synthesizer = synthesizer

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.SynthesizeResponse:
        result = await self.synthesizer.synthesize(
            to_synthesis_request(request, context.time_remaining())
        )
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
        )

    async def StreamingSynthesize(
        self, request: tts_pb2.StreamingSynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        stream = self.synthesizer.stream(to_synthesis_request(request, context.time_remaining()))
        async for chunk in stream:
            yield tts_pb2.StreamingSynthesizeResponse(
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
            )

    async def ListVoices(
        self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.ListVoicesResponse:
        voices = self.synthesizer.list_voices(request.language_code, request.engine)
        return tts_pb2.ListVoicesResponse(
            voices=[
                tts_pb2.Voice(
                    name=v.name,
                    engine=v.engine,
                    language_code=v.language_code,
                    gender=int(v.gender),  # type: ignore[arg-type]
                    natural_sample_rate_hertz=v.sample_rate,
                    tier=int(v.tier),  # type: ignore[arg-type]
                )
                for v in voices
            ]
        )
