"""One Transcribe request, whatever door it came in by: checks, the cache, the Transcriber.

The gRPC servicer (stt_service/servicer.py) and the HTTP front door (speech_http/) both call
``UnaryTranscription.transcribe`` with a ``TranscribeRequest``, so both share one set of
checks, one cache key (a file sent over HTTP hits what gRPC cached) and the same batchers,
memory budget and admission.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from speech.v1 import common_pb2, stt_pb2
from speech_platform.budget import MemoryBudget
from speech_platform.cache import CacheDoor, cache_key
from speech_platform.config import SttSettings
from speech_platform.errors import Unavailable
from stt_service.assembly import TRANSCRIPT_CODEC, Transcript, to_proto
from stt_service.audio import (
    RAW_ENCODINGS,
    AudioBytes,
    check_audio_config,
    check_known_length,
    decode_audio_async,
    decoding_bytes,
    known_seconds,
)
from stt_service.options import TranscribeOptions, batcher_priority
from stt_service.recognize import recognize
from stt_service.transcriber import ResolvedOptions, Transcriber

#: The door of a core without a cache (every call computes).
NO_CACHE: CacheDoor[Transcript] = CacheDoor(None, "stt", TRANSCRIPT_CODEC)

#: Audio larger than this is hashed for its cache key on a worker thread (hashlib lets go of
#: the GIL): SHA-256 of a 30 MiB upload takes tens of milliseconds, and on the event loop
#: sixteen of them at once held every other caller, health included, for half a second.
HASH_ON_LOOP_MAX_BYTES = 1 << 20

#: Seconds left before the caller's deadline (None: no deadline), asked at each step.
TimeRemaining = Callable[[], float | None]


def _no_deadline() -> float | None:
    return None


class UnaryTranscription:
    """Transcribes whole recordings for any front door (gRPC, HTTP)."""

    def __init__(
        self,
        transcriber: Transcriber,
        settings: SttSettings,
        door: CacheDoor[Transcript] = NO_CACHE,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.settings = settings
        self.door = door
        self._memory = memory or MemoryBudget()

    def require_ready(self) -> None:
        if not self.transcriber.ready:
            raise Unavailable("speech-to-text models are still loading; retry shortly")

    async def transcribe(
        self,
        request: stt_pb2.TranscribeRequest,
        *,
        audio: AudioBytes | None = None,
        caller: str,
        time_remaining: TimeRemaining = _no_deadline,
    ) -> stt_pb2.TranscribeResponse:
        """The response for ``request``; raises speech_platform errors on bad input.
        ``audio``: the request's audio where the door holds it apart from the message (gRPC
        hands a large one over as a view of the bytes it received, stt_service/servicer.py)."""
        self.require_ready()
        config = request.config
        if audio is None:
            # Read once: every read of a bytes field of a (upb) message is a fresh copy,
            # and six copies of a 30 MiB upload cost the event loop ~40 ms and 180 MiB.
            audio = request.audio
        resolved = self.transcriber.resolve(TranscribeOptions.from_config(config))
        priority = batcher_priority(config.priority)
        check_audio_config(
            audio,
            encoding=config.encoding,
            sample_rate_hertz=config.sample_rate_hertz,
            audio_channel_count=config.audio_channel_count,
        )

        known = known_seconds(
            audio,
            encoding=config.encoding,
            sample_rate_hertz=config.sample_rate_hertz,
            audio_channel_count=config.audio_channel_count,
        )
        # Too long is told before anything is hashed, reserved or decoded.
        check_known_length(known, self.settings.max_audio_seconds)
        # Each channel recognised apart is its own audio to decode.
        seconds = (
            known_seconds(
                audio,
                encoding=config.encoding,
                sample_rate_hertz=config.sample_rate_hertz,
                audio_channel_count=config.audio_channel_count,
                each_channel=True,
            )
            if resolved.separate_channels
            else known
        )

        async def compute() -> Transcript:
            # Admitted here, before any decoding, for the audio's windows (when its size
            # or WAV header tells its length); their cost is held against later arrivals
            # while it decodes, so a burst is refused on arrival (a cache hit never gets
            # this far).
            with self.transcriber.reserve(
                resolved, priority, time_remaining(), seconds, caller
            ) as promise:
                bound = decoding_bytes(
                    audio,
                    encoding=config.encoding,
                    sample_rate_hertz=config.sample_rate_hertz,
                    audio_channel_count=config.audio_channel_count,
                    max_seconds=self.settings.max_audio_seconds,
                    keep_channels=resolved.separate_channels,
                )
                with self._memory.reserve(bound, "this Transcribe call") as held:
                    decoded = await decode_audio_async(
                        audio,
                        encoding=config.encoding,
                        sample_rate_hertz=config.sample_rate_hertz,
                        audio_channel_count=config.audio_channel_count,
                        max_seconds=self.settings.max_audio_seconds,
                        keep_channels=resolved.separate_channels,
                        caller=caller,
                    )
                    held.resize(len(audio) + decoded.nbytes)
                    promise.release()
                    return await recognize(
                        self.transcriber,
                        decoded,
                        resolved,
                        priority=priority,
                        timeout_s=time_remaining(),
                        caller=caller,
                    )

        key = ""
        if self.door.needs_key(config.skip_cache):
            if len(audio) > HASH_ON_LOOP_MAX_BYTES:
                key = await asyncio.to_thread(transcription_cache_key, request, resolved, audio)
            else:
                key = transcription_cache_key(request, resolved, audio)
        transcript, hit = await self.door.get_or_compute(key, compute, skip=config.skip_cache)
        return to_proto(transcript, cache_hit=hit)

    def list_models(self) -> stt_pb2.ListModelsResponse:
        self.require_ready()
        default = self.transcriber.default_model
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
                for model in self.transcriber.models()
            ]
        )


def transcription_cache_key(
    request: stt_pb2.TranscribeRequest, resolved: ResolvedOptions, audio: AudioBytes | None = None
) -> str:
    """SHA-256 over the audio's SHA-256 and every option that changes the transcript.

    A container's own header decides how it decodes, so its declared encoding, rate and
    channel count are left out (the same file labelled differently still hits). ``audio``:
    the request's audio when the caller already holds it (saves a copy).
    """
    config = request.config
    digest = hashlib.sha256(request.audio if audio is None else audio).hexdigest()
    parts: dict[str, Any] = {"audio": digest}
    if config.encoding in RAW_ENCODINGS:
        parts |= {
            "encoding": common_pb2.AudioEncoding.Name(config.encoding),
            "sample_rate_hertz": config.sample_rate_hertz,
            "audio_channel_count": config.audio_channel_count or 1,
        }
    else:
        parts["encoding"] = "container"
    return cache_key("stt", {**parts, **resolved.cache_parts()})
