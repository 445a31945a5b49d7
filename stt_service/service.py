"""The speech-to-text service as the shared server hosts it (see speech_platform.service).

The Jobs service reuses its ``transcriber`` for long recordings through
``ServiceContext.services["stt"]``; streaming (stt_service/streaming) uses it for live audio.
"""

from __future__ import annotations

import grpc

from speech.v1 import stt_pb2_grpc
from speech_platform.cache import CacheDoor
from speech_platform.registration import register_with_parsers
from speech_platform.service import ServiceContext
from stt_service.assembly import TRANSCRIPT_CODEC
from stt_service.servicer import SpeechToTextServicer, parse_transcribe
from stt_service.transcriber import Transcriber


class SpeechToTextService:
    name: str = "stt"
    grpc_service_names: tuple[str, ...] = ("speech.v1.SpeechToText",)

    def __init__(self, ctx: ServiceContext) -> None:
        self.transcriber = Transcriber(ctx.settings.stt, model_dir=ctx.settings.model_dir)
        self.door = CacheDoor(ctx.cache, "stt", TRANSCRIPT_CODEC)
        self.servicer = SpeechToTextServicer(
            self.transcriber, ctx.settings.stt, self.door, ctx.memory
        )
        #: The cores every front door calls (gRPC above, speech_http): one set of checks,
        #: one cache key, the same batchers and stream limits.
        self.unary = self.servicer.unary
        self.streaming = self.servicer.streaming

    def register(self, server: grpc.aio.Server) -> None:
        # A Transcribe's audio stays a view of the received bytes (no parse copy).
        register_with_parsers(
            stt_pb2_grpc.add_SpeechToTextServicer_to_server,
            self.servicer,
            server,
            {"Transcribe": parse_transcribe},
        )

    async def start(self) -> None:
        await self.transcriber.start()

    async def stop(self, grace_s: float) -> None:
        await self.transcriber.stop(grace_s)


def build(ctx: ServiceContext) -> SpeechToTextService:
    return SpeechToTextService(ctx)
