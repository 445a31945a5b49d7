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
from typing import Any

from speech.v1 import common_pb2, jobs_pb2, stt_pb2
from speech_platform.config import Settings
from speech_platform.errors import InvalidArgument, NotFound
from speech_platform.jobs.engines import ProgressCallback, SynthesizedText
from speech_platform.jobs.records import JobKind
from speech_platform.jobs.runner import JobEngines
from speech_platform.service import ServiceContext

log = logging.getLogger(__name__)

#: The batcher priority of job work (stt_service.options: 0 low, 1 normal, 2 high).
JOB_PRIORITY = 0


class TranscriberEngine:
    """A TranscriptionEngine over ``stt_service.transcriber.Transcriber``."""

    def __init__(self, transcriber: Any) -> None:
        self._transcriber = transcriber

    def check(self, config: stt_pb2.RecognitionConfig) -> None:
        from stt_service.audio import RAW_ENCODINGS
        from stt_service.options import TranscribeOptions, batcher_priority

        if config.encoding not in common_pb2.AudioEncoding.values():
            raise InvalidArgument(f"config.encoding: unknown AudioEncoding value {config.encoding}")
        if config.encoding in RAW_ENCODINGS and config.sample_rate_hertz <= 0:
            raise InvalidArgument(
                "config.sample_rate_hertz is required for raw LINEAR16 and MULAW audio"
            )
        batcher_priority(config.priority)
        if self._transcriber.ready:
            self._resolve(TranscribeOptions.from_config(config))

    def _resolve(self, options: Any) -> Any:
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
        from stt_service.audio import decode_audio
        from stt_service.options import TranscribeOptions

        resolved = self._resolve(TranscribeOptions.from_config(config))
        decoded = await asyncio.to_thread(
            decode_audio,
            audio,
            encoding=config.encoding,
            sample_rate_hertz=config.sample_rate_hertz,
            audio_channel_count=config.audio_channel_count,
            max_seconds=max_seconds,
        )

        def windows_done(done: int, total: int) -> None:
            on_progress(done / total if total else 1.0)

        response: stt_pb2.TranscribeResponse = await self._transcriber.transcribe(
            decoded.samples, resolved, priority=JOB_PRIORITY, on_progress=windows_done
        )
        return response


class SynthesizerEngine:
    """A SynthesisEngine over ``tts_service.synthesizer.Synthesizer``.

    Each text is one ordinary unary synthesis, so it is stored under exactly the response
    cache key a later ``Synthesize`` call with the same text and settings looks up.
    """

    def __init__(self, synthesizer: Any) -> None:
        self._synthesizer = synthesizer

    def check(self, request: jobs_pb2.SubmitSynthesisJobRequest) -> None:
        from tts_service.audio_encoding import (
            resolve_output,
            validate_gain_db,
            validate_speaking_rate,
        )

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
        from tts_service.synthesizer import PRIORITY_LOW, SynthesisRequest

        audio = request.audio_config
        result = await self._synthesizer.synthesize(
            SynthesisRequest(
                text=text,
                voice=request.voice,
                tier=int(request.tier),
                encoding=int(audio.encoding),
                sample_rate_hertz=audio.sample_rate_hertz,
                speaking_rate=audio.speaking_rate,
                volume_gain_db=audio.volume_gain_db,
                priority=PRIORITY_LOW,
            )
        )
        item = jobs_pb2.SynthesizedItem(
            index=index,
            text=text,
            audio_duration_seconds=result.duration_s,
            cache_key=self._cache_key(text, request, result),
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

    def _cache_key(
        self, text: str, request: jobs_pb2.SubmitSynthesisJobRequest, result: Any
    ) -> str:
        """The key the Synthesizer stored this text under ("" without a cache).

        Rebuilt from the parts the Synthesizer documents as its key (tests check that the
        key reported is really present in the cache)."""
        from speech_platform.cache import cache_key
        from tts_service.audio_encoding import validate_gain_db, validate_speaking_rate
        from tts_service.synthesizer import PIPELINE_VERSION
        from tts_service.text import normalize

        if self._synthesizer.cache is None:
            return ""
        engine = self._synthesizer.engines[result.engine]
        return cache_key(
            "tts",
            {
                "mode": "unary",
                "engine": engine.name,
                "voice": result.voice,
                "model": engine.model_version,
                "text": normalize(text),
                "speaking_rate": validate_speaking_rate(request.audio_config.speaking_rate),
                "volume_gain_db": validate_gain_db(request.audio_config.volume_gain_db),
                "encoding": result.encoding.name,
                "sample_rate": result.sample_rate,
                "pipeline": PIPELINE_VERSION,
            },
        )


def engines_from_services(services: Mapping[str, Any]) -> JobEngines:
    """The engines of the STT and TTS services this server hosts (None where absent)."""
    stt, tts = services.get("stt"), services.get("tts")
    transcriber = getattr(stt, "transcriber", None)
    synthesizer = getattr(tts, "synthesizer", None)
    return JobEngines(
        transcription=TranscriberEngine(transcriber) if transcriber is not None else None,
        synthesis=SynthesizerEngine(synthesizer) if synthesizer is not None else None,
    )


async def load_worker_engines(
    settings: Settings, kinds: Sequence[JobKind]
) -> tuple[JobEngines, list[Any]]:
    """Builds and starts, for a worker's job kinds, the very services the server hosts
    (without registering them on any gRPC server); returns the engines and what to stop."""
    from speech_platform.cache.factory import build_cache

    cache = build_cache(settings.cache) if JobKind.SYNTHESIS in kinds else None
    if cache is not None and settings.cache.backend == "memory":
        log.warning(
            "cache.backend is 'memory': synthesis results stay inside this worker, where no "
            "server can read them; set SPEECH_CACHE__BACKEND=redis (or tiered)"
        )
    ctx = ServiceContext(settings=settings, cache=cache)
    services: dict[str, Any] = {}
    if JobKind.TRANSCRIPTION in kinds:
        from stt_service.service import build as build_stt

        services["stt"] = build_stt(ctx)
    if JobKind.SYNTHESIS in kinds:
        from tts_service.service import build as build_tts

        services["tts"] = build_tts(ctx)
    closers: list[Any] = list(services.values())
    try:
        await asyncio.gather(*(service.start() for service in services.values()))
    except BaseException:
        await asyncio.gather(*(s.stop(0) for s in closers), return_exceptions=True)
        raise
    if cache is not None:
        closers.append(_CacheCloser(cache))
    return engines_from_services(services), closers


class _CacheCloser:
    """Lets the worker close its cache with its services (same ``stop`` signature)."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    async def stop(self, grace_s: float) -> None:
        await self._cache.close()
