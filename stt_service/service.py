"""The speech-to-text service as the shared server hosts it (see speech_platform.service).

Other services reuse its ``transcriber`` (the Jobs service for long recordings, streaming
for live audio) through ``ServiceContext.services["stt"]``.
"""

from __future__ import annotations

import grpc

from speech.v1 import stt_pb2_grpc
from speech_platform.service import ServiceContext, SpeechService
from stt_service.servicer import SpeechToTextServicer
from stt_service.transcriber import Transcriber


class SpeechToTextService:
    name: str = "stt"
    grpc_service_names: tuple[str, ...] = ("speech.v1.SpeechToText",)

    def __init__(self, ctx: ServiceContext) -> None:
        self.transcriber = Transcriber(ctx.settings.stt, model_dir=ctx.settings.model_dir)
        self.servicer = SpeechToTextServicer(self.transcriber, ctx.settings.stt, ctx.cache)

    def register(self, server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SpeechToTextServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        await self.transcriber.start()

    async def stop(self, grace_s: float) -> None:
        await self.transcriber.stop(grace_s)


def build(ctx: ServiceContext) -> SpeechService:
    return SpeechToTextService(ctx)
