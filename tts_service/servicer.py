"""speech.v1.TextToSpeech over gRPC: request in, the door and the Synthesizer, message out.

Errors are raised, never set on the context: the shared interceptor maps them to status
codes (speech_platform.errors), so nothing here can answer UNKNOWN.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from speech.v1 import tts_pb2, tts_pb2_grpc
from speech_platform.cache import CacheDoor
from speech_platform.callers import caller_of
from speech_platform.errors import InvalidArgument
from tts_service.convert import (
    chunk_to_proto,
    result_to_proto,
    text_stream_request,
    to_synthesis_request,
)
from tts_service.results import SynthesisResult
from tts_service.streaming_text import FLUSH, Flush, cut_options, segments
from tts_service.synthesizer import NO_CACHE, Synthesizer


class TextToSpeechServicer(tts_pb2_grpc.TextToSpeechServicer):
    def __init__(
        self, synthesizer: Synthesizer, door: CacheDoor[SynthesisResult] = NO_CACHE
    ) -> None:
        self.synthesizer = synthesizer
        self.door = door

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.SynthesizeResponse:
        wanted = to_synthesis_request(request, context.time_remaining(), caller_of(context))
        return result_to_proto(await self.synthesizer.synthesize(wanted, self.door))

    async def StreamingSynthesize(
        self, request: tts_pb2.StreamingSynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        wanted = to_synthesis_request(request, context.time_remaining(), caller_of(context))
        async for chunk in self.synthesizer.stream(wanted, self.door):
            yield chunk_to_proto(chunk)

    async def StreamingSynthesizeText(
        self,
        request_iterator: AsyncIterator[tts_pb2.StreamingSynthesizeTextRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeTextResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("request") != "config":
            raise InvalidArgument("the first StreamingSynthesizeTextRequest must carry config")
        config = first.config
        options = cut_options(
            config.max_sentence_wait_ms, config.clause_fallback_chars, self.synthesizer.settings
        )
        wanted = text_stream_request(config, context.time_remaining(), caller_of(context))
        pieces = segments(_text_pieces(request_iterator), options)
        async for chunk in self.synthesizer.stream_segments(wanted, pieces):
            yield tts_pb2.StreamingSynthesizeTextResponse(chunk=chunk_to_proto(chunk))

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
                    blendable=v.blendable,
                )
                for v in voices
            ]
        )


async def _text_pieces(
    messages: AsyncIterator[tts_pb2.StreamingSynthesizeTextRequest],
) -> AsyncIterator[str | Flush]:
    async for message in messages:
        kind = message.WhichOneof("request")
        if kind == "text":
            yield message.text
        elif kind == "flush":
            yield FLUSH
        else:
            raise InvalidArgument(
                "config goes only in the first StreamingSynthesizeTextRequest; later ones "
                "carry text or flush"
            )
