"""The job engines over the real STT and TTS code.

In the server (embedded backend) they wrap the engines the STT and TTS services already
loaded; in a worker, ``load_worker_engines`` loads the same classes with the same settings.
Either way a job's windows and texts go through the same dynamic batchers as live requests,
at low priority, so live traffic sharing a process goes first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from speech.v1 import common_pb2, jobs_pb2, stt_pb2
from speech_jobs.engines import ProgressCallback, SynthesizedText
from speech_jobs.records import JobKind
from speech_jobs.runner import JobEngines
from speech_platform import priority
from speech_platform.cache import CacheDoor, ResponseCache, build_cache
from speech_platform.config import Settings
from speech_platform.errors import InvalidArgument, NotFound
from speech_platform.service import ServiceContext, SpeechService
from stt_service.assembly import to_proto
from stt_service.audio import RAW_ENCODINGS, decode_audio_async
from stt_service.options import TranscribeOptions, batcher_priority
from stt_service.recognize import recognize
from stt_service.service import SpeechToTextService
from stt_service.transcriber import ResolvedOptions, Transcriber
from tts_service.audio_encoding import resolve_output, validate_gain_db, validate_speaking_rate
from tts_service.convert import synthesis_request
from tts_service.results import SynthesisResult
from tts_service.service import TextToSpeechService
from tts_service.synthesizer import NO_CACHE, Synthesizer

log = logging.getLogger(__name__)

#: The batcher priority of job work: the lowest, so live traffic sharing a process goes first.
JOB_PRIORITY = priority.LOW


class TranscriberEngine:
    """A TranscriptionEngine over ``stt_service.transcriber.Transcriber``."""

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber

    def check(self, config: stt_pb2.RecognitionConfig) -> None:
        if config.encoding not in common_pb2.AudioEncoding.values():
            raise InvalidArgument(f"config.encoding: unknown AudioEncoding value {config.encoding}")
        if config.encoding in RAW_ENCODINGS and config.sample_rate_hertz <= 0:
            raise InvalidArgument(
                "config.sample_rate_hertz is required for raw LINEAR16 and MULAW audio"
            )
        batcher_priority(config.priority)
        if self._transcriber.ready:
            self._resolve(TranscribeOptions.from_config(config))

    def _resolve(self, options: TranscribeOptions) -> ResolvedOptions:
        try:
            return self._transcriber.resolve(options)
        except NotFound as error:  # in a job request an unknown model is a bad argument
            raise InvalidArgument(f"config.model: {error.message}") from None

    async def transcribe(
        self,
        audio: bytes,
        config: stt_pb2.RecognitionConfig,
        *,
        max_seconds: float,
        on_progress: ProgressCallback,
    ) -> stt_pb2.TranscribeResponse:
        resolved = self._resolve(TranscribeOptions.from_config(config))
        decoded = await decode_audio_async(
            audio,
            encoding=config.encoding,
            sample_rate_hertz=config.sample_rate_hertz,
            audio_channel_count=config.audio_channel_count,
            max_seconds=max_seconds,
            keep_channels=resolved.separate_channels,
        )

        def windows_done(done: int, total: int) -> None:
            on_progress(done / total if total else 1.0)

        transcript = await recognize(
            self._transcriber, decoded, resolved, priority=JOB_PRIORITY, on_progress=windows_done
        )
        return to_proto(transcript)


class SynthesizerEngine:
    """A SynthesisEngine over ``tts_service.synthesizer.Synthesizer``.

    Each text is one ordinary unary synthesis through the TTS service's cache door, so it is
    stored under exactly the key a later ``Synthesize`` call with the same text and
    settings looks up; the result says which key that is.
    """

    def __init__(self, synthesizer: Synthesizer, door: CacheDoor[SynthesisResult] = NO_CACHE):
        self._synthesizer = synthesizer
        self._door = door

    def check(self, request: jobs_pb2.SubmitSynthesisJobRequest) -> None:
        audio = request.audio_config
        validate_speaking_rate(audio.speaking_rate)
        validate_gain_db(audio.volume_gain_db)
        if not len(self._synthesizer.catalog):
            return  # voices not loaded yet: the job's run reports a bad voice instead
        try:
            route = self._synthesizer.router.route(
                request.voice, int(request.tier), disable_fallback=False
            )
        except NotFound as error:  # in a job request an unknown voice is a bad argument
            raise InvalidArgument(f"voice: {error.message}") from None
        resolve_output(int(audio.encoding), audio.sample_rate_hertz, route.voice.sample_rate)

    async def synthesize(
        self, index: int, text: str, request: jobs_pb2.SubmitSynthesisJobRequest
    ) -> SynthesizedText:
        wanted = synthesis_request(
            text, request.voice, int(request.tier), request.audio_config, priority=JOB_PRIORITY
        )
        result = await self._synthesizer.synthesize(wanted, self._door)
        item = jobs_pb2.SynthesizedItem(
            index=index,
            text=text,
            audio_duration_seconds=result.duration_s,
            cache_key=result.cache_key,
        )
        if request.include_audio:
            item.audio = result.audio
        return SynthesizedText(
            item=item,
            encoding=int(result.encoding),
            sample_rate_hertz=result.sample_rate,
            engine=result.engine,
            voice=result.voice,
        )


def engines_from_services(services: Mapping[str, SpeechService]) -> JobEngines:
    """The engines of the STT and TTS services this process hosts (None where absent)."""
    stt, tts = services.get("stt"), services.get("tts")
    return JobEngines(
        transcription=(
            TranscriberEngine(stt.transcriber) if isinstance(stt, SpeechToTextService) else None
        ),
        synthesis=(
            SynthesizerEngine(tts.synthesizer, tts.door)
            if isinstance(tts, TextToSpeechService)
            else None
        ),
    )


async def load_worker_engines(
    settings: Settings, kinds: Sequence[JobKind]
) -> tuple[JobEngines, list[Stoppable]]:
    """Builds and starts, for a worker's job kinds, the very services the server hosts
    (without registering them on any gRPC server); returns the engines and what to stop."""
    cache = build_cache(settings.cache) if JobKind.SYNTHESIS in kinds else None
    if cache is not None and settings.cache.backend == "memory":
        log.warning(
            "cache.backend is 'memory': synthesis results stay inside this worker, where no "
            "server can read them; set SPEECH_CACHE__BACKEND=redis (or tiered)"
        )
    ctx = ServiceContext(settings=settings, cache=cache)
    services: dict[str, SpeechService] = {}
    if JobKind.TRANSCRIPTION in kinds:
        services["stt"] = SpeechToTextService(ctx)
    if JobKind.SYNTHESIS in kinds:
        services["tts"] = TextToSpeechService(ctx)
    closers: list[Stoppable] = list(services.values())
    try:
        await asyncio.gather(*(service.start() for service in services.values()))
    except BaseException:
        await asyncio.gather(*(s.stop(0) for s in closers), return_exceptions=True)
        raise
    if cache is not None:
        closers.append(_CacheCloser(cache))
    return engines_from_services(services), closers


class Stoppable(Protocol):
    async def stop(self, grace_s: float) -> None: ...


class _CacheCloser:
    """Lets the worker close its cache with its services (same ``stop`` signature)."""

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    async def stop(self, grace_s: float) -> None:
        await self._cache.close()
