"""The speech.v1.SpeechToText servicer: request checks, the cache door, the Transcriber.

Shaped like tts_service/servicer.py: a request is checked and converted, looked up at the
service's cache door (speech_platform.cache.door, keyed by ``transcription_cache_key``
here), and on a miss decoded and transcribed by the core, whose ``Transcript`` becomes the
wire message in ``assembly.to_proto``.

Errors are raised, never returned: the server's interceptor turns them into status codes
(InvalidArgument -> INVALID_ARGUMENT, NotFound -> NOT_FOUND, batcher errors -> their codes).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from speech_platform.budget import MemoryBudget
from speech_platform.cache import CacheDoor, cache_key
from speech_platform.callers import caller_of
from speech_platform.config import SttSettings
from speech_platform.errors import Unavailable
from stt_service.assembly import TRANSCRIPT_CODEC, Transcript, to_proto
from stt_service.audio import (
    RAW_ENCODINGS,
    check_audio_config,
    decode_audio_async,
    decoding_bytes,
    raw_seconds,
)
from stt_service.options import TranscribeOptions, batcher_priority
from stt_service.recognize import recognize
from stt_service.streaming import StreamingRecognizer
from stt_service.transcriber import ResolvedOptions, Transcriber

log = logging.getLogger(__name__)

#: The door of a servicer without a cache (every call computes).
NO_CACHE: CacheDoor[Transcript] = CacheDoor(None, "stt", TRANSCRIPT_CODEC)


class SpeechToTextServicer(stt_pb2_grpc.SpeechToTextServicer):
    def __init__(
        self,
        transcriber: Transcriber,
        settings: SttSettings,
        door: CacheDoor[Transcript] = NO_CACHE,
        memory: MemoryBudget | None = None,
    ) -> None:
        self._transcriber = transcriber
        self._settings = settings
        self._door = door
        self._memory = memory or MemoryBudget()
        #: One for the servicer: it keeps the count of open streams.
        self._streaming = StreamingRecognizer(transcriber, settings)

    async def Transcribe(
        self, request: stt_pb2.TranscribeRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.TranscribeResponse:
        self._require_ready()
        config = request.config
        resolved = self._transcriber.resolve(TranscribeOptions.from_config(config))
        priority = batcher_priority(config.priority)
        check_audio_config(
            request.audio,
            encoding=config.encoding,
            sample_rate_hertz=config.sample_rate_hertz,
            audio_channel_count=config.audio_channel_count,
        )

        caller = caller_of(context)

        async def compute() -> Transcript:
            # Admitted here, before any decoding, for the audio's windows (when its size
            # tells its length); their cost is held against later arrivals while it decodes,
            # so a burst is refused on arrival (a cache hit never gets this far).
            seconds = raw_seconds(
                request.audio,
                encoding=config.encoding,
                sample_rate_hertz=config.sample_rate_hertz,
                audio_channel_count=config.audio_channel_count,
            )
            if seconds is not None and resolved.separate_channels:
                seconds *= max(config.audio_channel_count, 1)  # each channel decodes alone
            with self._transcriber.reserve(
                resolved, priority, context.time_remaining(), seconds, caller
            ) as promise:
                bound = decoding_bytes(
                    request.audio,
                    encoding=config.encoding,
                    sample_rate_hertz=config.sample_rate_hertz,
                    audio_channel_count=config.audio_channel_count,
                    max_seconds=self._settings.max_audio_seconds,
                    keep_channels=resolved.separate_channels,
                )
                with self._memory.reserve(bound, "this Transcribe call") as held:
                    decoded = await decode_audio_async(
                        request.audio,
                        encoding=config.encoding,
                        sample_rate_hertz=config.sample_rate_hertz,
                        audio_channel_count=config.audio_channel_count,
                        max_seconds=self._settings.max_audio_seconds,
                        keep_channels=resolved.separate_channels,
                    )
                    held.resize(len(request.audio) + decoded.nbytes)
                    promise.release()
                    return await recognize(
                        self._transcriber,
                        decoded,
                        resolved,
                        priority=priority,
                        timeout_s=context.time_remaining(),
                        caller=caller,
                    )

        key = transcription_cache_key(request, resolved) if self._door.enabled else ""
        transcript, hit = await self._door.get_or_compute(key, compute, skip=config.skip_cache)
        return to_proto(transcript, cache_hit=hit)

    async def StreamingTranscribe(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingTranscribeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingTranscribeResponse]:
        # Live recognition (VAD endpointing; interim and final decodes through the same
        # per-model batchers as Transcribe) lives in stt_service.streaming.
        async for response in self._streaming.serve(request_iterator, context):
            yield response

    async def ListModels(
        self, request: stt_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> stt_pb2.ListModelsResponse:
        self._require_ready()
        default = self._transcriber.default_model
        return stt_pb2.ListModelsResponse(
            models=[
                stt_pb2.ModelInfo(
                    name=model.name,
                    languages=list(model.languages),
                    multilingual=model.multilingual,
                    is_default=model.name == default,
                    device=model.device,
                    compute_type=model.compute_type,
                    instances=model.instances,
                    weights_digest=model.weights_digest,
                    engine_version=model.engine_version,
                )
                for model in self._transcriber.models()
            ]
        )

    def _require_ready(self) -> None:
        if not self._transcriber.ready:
            raise Unavailable("speech-to-text models are still loading; retry shortly")


def transcription_cache_key(
    request: stt_pb2.TranscribeRequest, resolved: ResolvedOptions
) -> str:
    """SHA-256 over the audio's SHA-256 and every option that changes the transcript.

    A container's own header decides how it decodes, so its declared encoding, rate and
    channel count are left out (the same file labelled differently still hits).
    """
    config = request.config
    audio: dict[str, Any] = {"audio": hashlib.sha256(request.audio).hexdigest()}
    if config.encoding in RAW_ENCODINGS:
        audio |= {
            "encoding": common_pb2.AudioEncoding.Name(config.encoding),
            "sample_rate_hertz": config.sample_rate_hertz,
            "audio_channel_count": config.audio_channel_count or 1,
        }
    else:
        audio["encoding"] = "container"
    return cache_key("stt", {**audio, **resolved.cache_parts()})
