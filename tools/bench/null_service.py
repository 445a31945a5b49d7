"""A SpeechToText service whose engine does no work: it isolates the serving path.

Requests travel exactly as real ones do (the same SpeechServer, interceptor, batcher and
metrics), but the batch function returns at once. What the null engine sustains is therefore
the ceiling the server and batcher put on any engine, and its latency is their overhead.
"""

from __future__ import annotations

import grpc

from batcher import Batcher, BatchFunction
from speech.v1 import stt_pb2, stt_pb2_grpc
from speech_platform.batching import make_batcher
from speech_platform.config import BatcherSettings
from speech_platform.errors import InvalidArgument, Unavailable

NULL_MODEL = "null"
#: Bytes per second of 16 kHz 16-bit mono, to report a duration without decoding.
_PCM_BYTES_PER_S = 32_000.0


def _null_batch(items: list[int]) -> list[int]:
    """The engine: answers every item with its own size, computing nothing."""
    return items


def _null_factory(instance: int) -> BatchFunction[int, int]:
    return _null_batch


class NullSpeechToText(stt_pb2_grpc.SpeechToTextServicer):
    def __init__(self, service: NullSpeechService) -> None:
        self._service = service

    async def Transcribe(  # gRPC method name
        self, request: stt_pb2.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.TranscribeResponse:
        if not request.audio:
            raise InvalidArgument("audio is empty")
        if self._service.batched:
            size = await self._service.batcher.submit(len(request.audio), cost=1.0)
        else:
            (size,) = _null_batch([len(request.audio)])
        return stt_pb2.TranscribeResponse(
            language_code="en",
            language_probability=1.0,
            audio_duration_seconds=size / _PCM_BYTES_PER_S,
            model=NULL_MODEL,
        )

    async def ListModels(
        self, request: stt_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.ListModelsResponse:
        info = stt_pb2.ModelInfo(
            name=NULL_MODEL, languages=["en"], is_default=True, device="cpu",
            instances=self._service.instances,
        )
        return stt_pb2.ListModelsResponse(models=[info])


class NullSpeechService:
    """Plugs into SpeechServer like stt_service does (see speech_platform.service)."""

    name: str = "null"
    grpc_service_names: tuple[str, ...] = ("speech.v1.SpeechToText",)

    def __init__(
        self, batcher_settings: BatcherSettings, instances: int = 1, *, batched: bool = True
    ) -> None:
        """``batched=False`` answers inline, without the batcher: the difference between the
        two is what the batcher costs inside the server."""
        self.instances = instances
        self.batched = batched
        self._settings = batcher_settings
        self._batcher: Batcher[int, int] | None = None

    @property
    def batcher(self) -> Batcher[int, int]:
        if self._batcher is None:
            raise Unavailable("null engine is not started")
        return self._batcher

    def register(self, server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SpeechToTextServicer_to_server(NullSpeechToText(self), server)

    async def start(self) -> None:
        if not self.batched:
            return
        batcher: Batcher[int, int]
        batcher, _recording = make_batcher(
            _null_factory,
            self._settings,
            model=NULL_MODEL,
            instances=self.instances,
        )
        await batcher.start()
        self._batcher = batcher

    async def stop(self, grace_s: float) -> None:
        if self._batcher is not None:
            await self._batcher.close(grace_s)
