"""Text in, encoded speech out: the TTS service's core, reused by bulk-synthesis jobs.

``Synthesizer.synthesize`` answers a whole request; ``Synthesizer.stream`` yields it sentence
by sentence. Both validate, normalise and split the text, route to a voice, submit every
sentence to the engine's batcher at once and fall back to the other engine when the chosen
one is overloaded or failing. Both take the service's cache door (speech_platform.cache.door)
from the caller: each attempt (a voice; a fallback is another voice, so another key) looks
its key up there, unary results with single-flight, streams as their list of chunks (looked
up first, stored once complete, so a miss still streams live). The key is built here, in
``synthesis_cache_key``, and nowhere else.

Scheduling: each sentence's batcher priority is the request's level minus its position
(capped), so the first sentence of a newly arrived request overtakes the later sentences of
long texts already queued; the batcher's priority aging keeps those moving. A long text
therefore never makes a short one wait for all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from batcher import QueueFull
from speech_platform import priority
from speech_platform.budget import MemoryBudget
from speech_platform.cache import CacheDoor, cache_key
from speech_platform.config import TtsSettings
from speech_platform.errors import InvalidArgument
from speech_platform.metrics import TTS_TIME_TO_FIRST_AUDIO
from tts_service.audio_encoding import (
    AudioPipeline,
    OutputFormat,
    encode_whole,
    resolve_output,
    validate_gain_db,
    validate_speaking_rate,
)
from tts_service.convert import CHUNK_CODEC, RESULT_CODEC
from tts_service.engine import Engine, EngineError, PreparedItem
from tts_service.limits import check_text_limits, estimated_output_bytes
from tts_service.results import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    SynthesisChunk,
    SynthesisRequest,
    SynthesisResult,
)
from tts_service.routing import (
    ENGINE_ERROR,
    OVERLOADED,
    Route,
    Router,
    count_fallback,
)
from tts_service.text import (
    DEFAULT_MAX_SENTENCE_CHARS,
    normalize,
    pack_sentences,
    split_sentences,
)
from tts_service.voices import Voice, VoiceCatalog

log = logging.getLogger(__name__)

#: Bumped whenever the audio for the same inputs would change (cache entries then die).
PIPELINE_VERSION = 1
#: Sentence positions that lower a sentence's priority; later ones share the lowest level.
SENTENCE_LEVELS = 4
#: A request never puts more items than this in a queue (tiny sentences are joined).
MAX_ITEMS_PER_REQUEST = 64
#: Texts up to this long are normalised on the event loop (well under a millisecond);
#: longer ones in a thread.
INLINE_TEXT_CHARS = 400

#: The door a caller without a cache goes through (every call computes).
NO_CACHE: CacheDoor[SynthesisResult] = CacheDoor(None, "tts", RESULT_CODEC)


@dataclass
class _Plan:
    """A validated request: what to say and how to deliver it."""

    request: SynthesisRequest
    route: Route
    normalized: str
    sentences: list[str]
    speaking_rate: float
    gain_db: float
    deadline: float | None
    #: What the request holds until it ends (its share of the memory budget).
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    fallback_reason: str = ""
    voice: Voice = field(init=False)

    def __post_init__(self) -> None:
        self.voice = self.route.voice
        self.fallback_reason = self.route.rerouted_reason

    def remaining_s(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def output(self) -> OutputFormat:
        return resolve_output(
            self.request.encoding, self.request.sample_rate_hertz, self.voice.sample_rate
        )

    def switch_to_fallback(self, reason: str) -> bool:
        """Moves to the stand-in voice once; False if there is none (or it already did)."""
        stand_in = self.route.fallback
        if stand_in is None or self.voice is stand_in:
            return False
        count_fallback(self.voice.engine, reason)
        log.warning(
            "tts fallback",
            extra={"from_voice": self.voice.name, "to_voice": stand_in.name, "reason": reason},
        )
        self.voice = stand_in
        self.fallback_reason = reason
        return True


class Synthesizer:
    """Serves synthesis over the loaded engines."""

    def __init__(
        self,
        settings: TtsSettings,
        engines: Sequence[Engine[PreparedItem]],
        memory: MemoryBudget | None = None,
    ) -> None:
        self.settings = settings
        self.memory = memory or MemoryBudget()
        self.engines = {engine.name: engine for engine in engines}
        self.catalog = VoiceCatalog([])
        self.router = Router(self.catalog, {})

    async def start(self) -> None:
        await asyncio.gather(*(engine.start() for engine in self.engines.values()))
        self.catalog = VoiceCatalog(v for e in self.engines.values() for v in e.voices())
        defaults = {
            "piper": self.settings.default_piper_voice,
            "kokoro": self.settings.default_kokoro_voice,
        }
        self.router = Router(self.catalog, defaults)

    async def stop(self, grace_s: float | None = None) -> None:
        await asyncio.gather(*(engine.stop(grace_s) for engine in self.engines.values()))

    def list_voices(self, language_code: str = "", engine: str = "") -> list[Voice]:
        wanted = engine.strip().lower()
        if wanted and wanted not in ("piper", "kokoro"):
            raise InvalidArgument(f"engine must be 'piper' or 'kokoro' (or empty); got {engine!r}")
        return sorted(self.catalog.list(language_code, wanted), key=lambda v: (v.engine, v.name))

    # ------------------------------------------------------------------ unary

    async def synthesize(
        self, request: SynthesisRequest, door: CacheDoor[SynthesisResult] = NO_CACHE
    ) -> SynthesisResult:
        plan = await self._plan(request)
        with plan.held:
            while True:
                try:
                    return await self._attempt(plan, door)
                except (QueueFull, EngineError) as error:
                    reason = OVERLOADED if isinstance(error, QueueFull) else ENGINE_ERROR
                    if not plan.switch_to_fallback(reason):
                        raise

    async def _attempt(self, plan: _Plan, door: CacheDoor[SynthesisResult]) -> SynthesisResult:
        engine = self.engines[plan.voice.engine]
        output = plan.output()

        async def compute() -> SynthesisResult:
            audio = await self._render(engine, plan)
            data, duration = await asyncio.to_thread(
                encode_whole, audio, engine.sample_rate, output, plan.gain_db
            )
            return SynthesisResult(
                audio=data,
                encoding=output.encoding,
                sample_rate=output.sample_rate,
                duration_s=duration,
                engine=engine.name,
                voice=plan.voice.name,
            )

        key = synthesis_cache_key(engine, plan, output) if door.enabled else ""
        result, hit = await door.get_or_compute(key, compute, skip=plan.request.skip_cache)
        return replace(
            result,
            cache_hit=hit,
            fallback=bool(plan.fallback_reason),
            fallback_reason=plan.fallback_reason,
            cache_key=key,
        )

    async def _render(self, engine: Engine[PreparedItem], plan: _Plan) -> np.ndarray:
        _, tasks = await self._prepare_and_submit(engine, plan)
        try:
            pieces = await asyncio.gather(*tasks)
        finally:
            await _cancel(tasks)
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    # ------------------------------------------------------------------ streaming

    async def stream(
        self, request: SynthesisRequest, door: CacheDoor[SynthesisResult] = NO_CACHE
    ) -> AsyncGenerator[SynthesisChunk, None]:
        """Chunks in sentence order, the first as soon as the first sentence is rendered.

        Every sentence is submitted at once. Fallback is possible until the first chunk is
        out; after that the voice cannot change mid-stream, so a failure ends the stream.
        """
        arrived = time.perf_counter()
        plan = await self._plan(request)
        with plan.held:
            async for chunk in self._stream_plan(plan, door, arrived):
                yield chunk

    async def _stream_plan(
        self, plan: _Plan, door: CacheDoor[SynthesisResult], arrived: float
    ) -> AsyncGenerator[SynthesisChunk, None]:
        while True:
            engine = self.engines[plan.voice.engine]
            output = plan.output()
            started = False
            try:
                key = synthesis_cache_key(engine, plan, output, "stream") if door.enabled else ""
                chunks = door.stream(
                    key,
                    functools.partial(self._render_stream, engine, plan, output),
                    CHUNK_CODEC,
                    skip=plan.request.skip_cache,
                )
                async with contextlib.aclosing(chunks):
                    async for chunk, hit in chunks:
                        if not started:
                            started = True
                            TTS_TIME_TO_FIRST_AUDIO.labels(engine.name).observe(
                                time.perf_counter() - arrived
                            )
                        yield replace(
                            chunk,
                            cache_hit=hit,
                            fallback=bool(plan.fallback_reason),
                            fallback_reason=plan.fallback_reason,
                        )
                return
            except (QueueFull, EngineError) as error:
                reason = OVERLOADED if isinstance(error, QueueFull) else ENGINE_ERROR
                if started or not plan.switch_to_fallback(reason):
                    raise

    async def _render_stream(
        self, engine: Engine[PreparedItem], plan: _Plan, output: OutputFormat
    ) -> AsyncGenerator[SynthesisChunk, None]:
        """Renders the sentences live, one chunk each (the cache is the caller's door)."""
        items, tasks = await self._prepare_and_submit(engine, plan)
        pipeline = AudioPipeline(engine.sample_rate, output, plan.gain_db, streaming=True)
        try:
            for index, (item, task) in enumerate(zip(items, tasks, strict=True)):
                audio = await task
                before = pipeline.samples
                last = index == len(items) - 1
                data = await asyncio.to_thread(_encode_piece, pipeline, audio, last)
                yield SynthesisChunk(
                    audio=data,
                    index=index,
                    text=item.sentence,
                    encoding=output.encoding,
                    sample_rate=output.sample_rate,
                    duration_s=(pipeline.samples - before) / output.sample_rate,
                    engine=engine.name,
                    voice=plan.voice.name,
                )
        finally:
            await _cancel(tasks)

    # ------------------------------------------------------------------ shared steps

    async def _plan(self, request: SynthesisRequest) -> _Plan:
        """Checks a request and normalises its text (a long one in a thread, so the event
        loop never waits on it), refusing what passes a limit before anything is
        phonemized, and reserves the memory its audio will take."""
        text = request.text
        if not text or not text.strip():
            raise InvalidArgument("text is empty; give the words to speak")
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise InvalidArgument(
                f"text has {len(text)} characters; this server takes at most {limit} per "
                "request (tts.max_text_chars): split it, or submit a bulk-synthesis job"
            )
        speaking_rate = validate_speaking_rate(request.speaking_rate)
        gain_db = validate_gain_db(request.volume_gain_db)
        if request.priority not in priority.LEVELS:
            raise InvalidArgument(f"priority {request.priority} is not a known priority")
        route = self.router.route(
            request.voice, request.tier, disable_fallback=request.disable_fallback
        )
        resolve_output(request.encoding, request.sample_rate_hertz, route.voice.sample_rate)
        deadline = None
        if request.timeout_s is not None and math.isfinite(request.timeout_s):
            deadline = time.monotonic() + request.timeout_s
        self._precheck(request, route)
        if len(text) <= INLINE_TEXT_CHARS:
            normalized, sentences = _split(text)
        else:
            normalized, sentences = await asyncio.to_thread(_split, text)
        seconds = check_text_limits(normalized, len(sentences), speaking_rate, self.settings)
        if not sentences:
            raise InvalidArgument(
                "text has nothing to speak once emoji, symbols and characters of scripts "
                "the English voices cannot read are left out"
            )
        plan = _Plan(
            request,
            route,
            normalized,
            pack_sentences(sentences, MAX_ITEMS_PER_REQUEST, DEFAULT_MAX_SENTENCE_CHARS),
            speaking_rate,
            gain_db,
            deadline,
        )
        rate = max(v.sample_rate for v in (route.voice, route.fallback) if v is not None)
        plan.held.enter_context(
            self.memory.reserve(estimated_output_bytes(seconds, rate), "this synthesis call")
        )
        return plan

    async def _prepare(self, engine: Engine[PreparedItem], plan: _Plan) -> list[PreparedItem]:
        """Phonemizes every sentence (in a thread); sentences with nothing to say drop out."""
        voice, rate = plan.voice, plan.speaking_rate

        def prepare_all() -> list[PreparedItem]:
            items = []
            for sentence in plan.sentences:
                try:
                    items.append(engine.prepare(sentence, voice, rate))
                except InvalidArgument:
                    log.debug("sentence dropped: nothing to say", extra={"voice": voice.name})
            return items

        items = await asyncio.to_thread(prepare_all)
        for item in items:
            engine.observe_prepared(len(item.sentence), item.cost)
        if not items:
            raise InvalidArgument(f"text has nothing that voice {voice.name} can speak")
        return items

    def _precheck(self, request: SynthesisRequest, route: Route) -> None:
        """Refuses (Overloaded) before any text work a request that would finish too late
        even at its length as sent (spelling out only lengthens it) on its voice and on
        its stand-in: a flood of long texts then costs little."""
        level = request.priority * SENTENCE_LEVELS + SENTENCE_LEVELS - 1
        voices = [v for v in (route.voice, route.fallback) if v is not None]
        for index, voice in enumerate(voices):
            try:
                with self.engines[voice.engine].reserve(
                    len(request.text),
                    max(len(request.text) // DEFAULT_MAX_SENTENCE_CHARS, 1),
                    priority=level,
                    timeout_s=request.timeout_s,
                    caller=request.caller,
                ):
                    return
            except QueueFull:
                if index == len(voices) - 1:
                    raise

    async def _prepare_and_submit(
        self, engine: Engine[PreparedItem], plan: _Plan
    ) -> tuple[list[PreparedItem], list[asyncio.Task[np.ndarray]]]:
        """Admits the request on ``engine`` before phonemizing it (a burst is refused on
        arrival, not after its phonemes are made), then phonemizes and queues every item."""
        first_level = plan.request.priority * SENTENCE_LEVELS + SENTENCE_LEVELS - 1
        with engine.reserve(
            len(plan.normalized),
            len(plan.sentences),
            priority=first_level,
            timeout_s=plan.remaining_s(),
            caller=plan.request.caller,
        ) as promise:
            items = await self._prepare(engine, plan)
            promise.release()
            tasks = await self._submit_all(engine, plan, items)
        return items, tasks

    async def _submit_all(
        self, engine: Engine[PreparedItem], plan: _Plan, items: list[PreparedItem]
    ) -> list[asyncio.Task[np.ndarray]]:
        """Queues every item; raises QueueFull (with nothing left queued) if they do not fit."""
        if not engine.has_room_for(len(items)):
            raise QueueFull(
                f"{engine.name}: no room for {len(items)} more sentences", retry_after_s=1.0
            )
        level = plan.request.priority * SENTENCE_LEVELS + SENTENCE_LEVELS - 1
        tasks = [
            asyncio.ensure_future(
                engine.render(
                    item,
                    priority=level - min(index, SENTENCE_LEVELS - 1),
                    timeout_s=plan.remaining_s(),
                    caller=plan.request.caller,
                )
            )
            for index, item in enumerate(items)
        ]
        await asyncio.sleep(0)  # each task runs up to its queue slot (or its QueueFull)
        refused = next(
            (t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()),
            None,
        )
        if refused is not None:
            await _cancel(tasks)
            raise refused
        return tasks


def synthesis_cache_key(
    engine: Engine[PreparedItem], plan: _Plan, output: OutputFormat, mode: str = "unary"
) -> str:
    """The response-cache key of one attempt (a voice) at a request: the one place TTS
    builds it. A stream ("stream") and a whole response ("unary") are stored apart."""
    return cache_key(
        "tts",
        {
            "mode": mode,
            "engine": engine.name,
            "voice": plan.voice.name,
            "model": engine.model_version,
            "runtime": engine.runtime,
            "text": plan.normalized,
            "speaking_rate": plan.speaking_rate,
            "volume_gain_db": plan.gain_db,
            "encoding": output.encoding.name,
            "sample_rate": output.sample_rate,
            "pipeline": PIPELINE_VERSION,
        },
    )


def _split(text: str) -> tuple[str, list[str]]:
    normalized = normalize(text)
    return normalized, split_sentences(normalized, DEFAULT_MAX_SENTENCE_CHARS)


def _encode_piece(pipeline: AudioPipeline, audio: np.ndarray, last: bool) -> bytes:
    data = pipeline.push(audio)
    return data + pipeline.finish() if last else data


async def _cancel(tasks: Sequence[asyncio.Task[np.ndarray]]) -> None:
    """Withdraws items still queued (the batcher never computes them) and waits them out."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:  # retrieve outcomes so asyncio does not log them as never retrieved
        if task.done() and not task.cancelled():
            task.exception()


__all__ = [
    "NO_CACHE",
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_NORMAL",
    "SynthesisChunk",
    "SynthesisRequest",
    "SynthesisResult",
    "Synthesizer",
    "synthesis_cache_key",
]
