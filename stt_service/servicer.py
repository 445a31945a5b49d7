"""The speech.v1.SpeechToText servicer: gRPC in, the shared cores, gRPC out.

Shaped like tts_service/servicer.py: a unary request goes to ``UnaryTranscription``
(stt_service/unary.py: checks, the cache door, the Transcriber), which the HTTP front door
calls too; a stream goes to the ``StreamingRecognizer``.

Errors are raised, never returned: the server's interceptor turns them into status codes
(InvalidArgument -> INVALID_ARGUMENT, NotFound -> NOT_FOUND, batcher errors -> their codes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from speech.v1 import stt_pb2, stt_pb2_grpc
from speech_platform.budget import MemoryBudget
from speech_platform.cache import CacheDoor
from speech_platform.callers import caller_of
from speech_platform.config import SttSettings
from speech_platform.wire import Received, parse_apart
from stt_service.assembly import Transcript
from stt_service.streaming import StreamingRecognizer
from stt_service.transcriber import Transcriber
from stt_service.unary import NO_CACHE, UnaryTranscription

#: A Transcribe of this size or more keeps its audio as a view of the received bytes: parsed
#: whole, upb copies the audio into the message and again at each read (a 24 MiB upload:
#: two copies and ~35 ms of the event loop). Smaller ones cost a few microseconds either way.
APART_MIN_BYTES = 64 * 1024

#: gRPC's request deserializer for Transcribe.
parse_transcribe = parse_apart(
    stt_pb2.TranscribeRequest.FromString,
    stt_pb2.TranscribeRequest.DESCRIPTOR.fields_by_name["audio"].number,
    APART_MIN_BYTES,
)


class SpeechToTextServicer(stt_pb2_grpc.SpeechToTextServicer):
    def __init__(
        self,
        transcriber: Transcriber,
        settings: SttSettings,
        door: CacheDoor[Transcript] = NO_CACHE,
        memory: MemoryBudget | None = None,
        streaming: StreamingRecognizer | None = None,
    ) -> None:
        self.unary = UnaryTranscription(transcriber, settings, door, memory)
        #: One per service: it keeps the count of open streams (shared with HTTP).
        self.streaming = streaming or StreamingRecognizer(transcriber, settings)

    async def Transcribe(
        self,
        request: stt_pb2.TranscribeRequest | Received[stt_pb2.TranscribeRequest],
        context: grpc.aio.ServicerContext,
    ) -> stt_pb2.TranscribeResponse:
        # A large one arrives apart (``parse_transcribe``); a direct call passes the message.
        message, audio = (
            (request.message, request.payload) if isinstance(request, Received) else (request, None)
        )
        return await self.unary.transcribe(
            message, audio=audio, caller=caller_of(context), time_remaining=context.time_remaining
        )

    async def StreamingTranscribe(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingTranscribeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingTranscribeResponse]:
        # Live recognition (VAD endpointing; interim and final decodes through the same
        # per-model batchers as Transcribe) lives in stt_service.streaming.
        async for response in self.streaming.serve(request_iterator, context):
            yield response

    async def ListModels(
        self, request: stt_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.ListModelsResponse:
        return self.unary.list_models()
