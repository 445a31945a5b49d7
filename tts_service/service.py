"""The text-to-speech service as the shared server hosts it (see speech_platform.service).

The Jobs service reuses its ``synthesizer`` and cache ``door`` for bulk synthesis (so a
job's texts land under the keys a later Synthesize looks up) through
``ServiceContext.services["tts"]``.
"""

from __future__ import annotations

import grpc

from speech.v1 import tts_pb2_grpc
from speech_platform.cache import CacheDoor
from speech_platform.service import ServiceContext
from tts_service.convert import RESULT_CODEC
from tts_service.engine import Engine, PreparedItem
from tts_service.kokoro_engine import KokoroEngine
from tts_service.piper_engine import PiperEngine
from tts_service.servicer import TextToSpeechServicer
from tts_service.synthesizer import Synthesizer


class TextToSpeechService:
    name: str = "tts"
    grpc_service_names: tuple[str, ...] = ("speech.v1.TextToSpeech",)

    def __init__(self, ctx: ServiceContext) -> None:
        settings = ctx.settings.tts
        engines: list[Engine[PreparedItem]] = []
        if "piper" in settings.engines:
            engines.append(PiperEngine(settings, ctx.settings.model_dir))
        if "kokoro" in settings.engines:
            engines.append(KokoroEngine(settings, ctx.settings.model_dir))
        self.synthesizer = Synthesizer(settings, engines, ctx.memory)
        self.door = CacheDoor(ctx.cache, "tts", RESULT_CODEC)
        self.servicer = TextToSpeechServicer(self.synthesizer, self.door)

    def register(self, server: grpc.aio.Server) -> None:
        tts_pb2_grpc.add_TextToSpeechServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        await self.synthesizer.start()

    async def stop(self, grace_s: float) -> None:
        await self.synthesizer.stop(grace_s)


def build(ctx: ServiceContext) -> TextToSpeechService:
    return TextToSpeechService(ctx)
