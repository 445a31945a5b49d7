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
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import astuple, dataclass, field, replace

import numpy as np

from batcher import CallerOverloaded, QueueFull
from speech_platform import priority
from speech_platform.budget import MemoryBudget
from speech_platform.cache import CacheDoor, cache_key
from speech_platform.config import TtsSettings
from speech_platform.errors import InvalidArgument
from speech_platform.logs import LogThrottle
from speech_platform.metrics import TTS_TIME_TO_FIRST_AUDIO
from speech_platform.workpool import FairPool
from tts_service import ssml
from tts_service.alignment import AlignedText
from tts_service.audio_encoding import (
    MAX_SPEAKING_RATE,
    MIN_SPEAKING_RATE,
    AudioPipeline,
    OutputFormat,
    encode_whole,
    resolve_output,
    validate_gain_db,
    validate_speaking_rate,
)
from tts_service.convert import CHUNK_CODEC, RESULT_CODEC
from tts_service.engine import (
    Engine,
    EngineError,
    PreparedItem,
    RenderedSentence,
    with_pauses,
)
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
from tts_service.ssml import PLAIN, SentenceStyle
from tts_service.streaming_text import Segment
from tts_service.text import (
    DEFAULT_MAX_SENTENCE_CHARS,
    is_speakable,
    normalize,
    normalize_aligned,
    pack_sentences,
    split_sentences,
)
from tts_service.timings import SentenceTimer, WordTime, mark_times
from tts_service.voices import Voice, VoiceCatalog

log = logging.getLogger(__name__)
#: One "tts fallback" line per engine pair and reason every 10 s (tts_fallbacks_total counts
#: each): under overload every request falls back.
_FALLBACK_LOG = LogThrottle(log)

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
    #: Whether the stand-in also takes the voice's engine's overload (``Synthesizer.spills``).
    spills: bool = True
    voice: Voice = field(init=False)
    #: The normalised text with its map back to the request's characters (word timings).
    aligned: AlignedText = field(init=False)
    #: Per sentence: SSML's rate factor and pauses (PLAIN for plain text).
    styles: list[SentenceStyle] = field(init=False)

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
        """Moves to the stand-in voice once; False if there is none (or it already did, or
        the reason is overload and the stand-in would add no capacity)."""
        stand_in = self.route.fallback
        if stand_in is None or self.voice is stand_in:
            return False
        if reason == OVERLOADED and not self.spills:
            return False
        count_fallback(self.voice.engine, reason)
        _FALLBACK_LOG.warning(
            (self.voice.engine, stand_in.engine, reason),
            "tts fallback",
            from_voice=self.voice.name,
            to_voice=stand_in.name,
            reason=reason,
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
        #: Normalising long texts and phonemizing run here, callers taking turns (a flood
        #: of long texts never queues another caller's sentence behind all of it).
        #: Its threads run at the engines' CPU priority: below the event loop's, and not
        #: above the models they feed.
        self.prep = FairPool(
            workers=max(len(os.sched_getaffinity(0)), 1),
            name="tts-prep",
            nice=settings.piper_batcher.compute_nice,
        )
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
        self.prep.close()

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
                    if _own_excess(error) or not plan.switch_to_fallback(reason):
                        raise

    async def _attempt(self, plan: _Plan, door: CacheDoor[SynthesisResult]) -> SynthesisResult:
        engine = self.engines[plan.voice.engine]
        output = plan.output()

        async def compute() -> SynthesisResult:
            audio, words = await self._render(engine, plan)
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
                words=tuple(words),
            )

        skip = plan.request.skip_cache
        key = synthesis_cache_key(engine, plan, output) if door.needs_key(skip) else ""
        result, hit = await door.get_or_compute(key, compute, skip=skip)
        return replace(
            result,
            marks=tuple(mark_times(plan.request.marks, result.words, result.duration_s)),
            cache_hit=hit,
            fallback=bool(plan.fallback_reason),
            fallback_reason=plan.fallback_reason,
            cache_key=key,
        )

    async def _render(
        self, engine: Engine[PreparedItem], plan: _Plan
    ) -> tuple[np.ndarray, list[WordTime]]:
        items, tasks = await self._prepare_and_submit(engine, plan)
        try:
            rendered = await asyncio.gather(
                *(_rendered(t, i, engine.sample_rate) for t, i in zip(tasks, items, strict=True))
            )
        finally:
            await _cancel(tasks)
        words: list[WordTime] = []
        if plan.request.enable_word_timings:
            timer = SentenceTimer(plan.aligned, plan.request.text, engine.sample_rate)
            for item, sentence in zip(items, rendered, strict=True):
                words += timer.next(item.sentence, sentence.audio.size, sentence.words)
        pieces = [r.audio for r in rendered]
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return audio, words

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
                key = (
                    synthesis_cache_key(engine, plan, output, "stream")
                    if door.needs_key(plan.request.skip_cache)
                    else ""
                )
                chunks = door.stream(
                    key,
                    functools.partial(self._render_stream, engine, plan, output),
                    CHUNK_CODEC,
                    skip=plan.request.skip_cache,
                )
                marks = list(plan.request.marks)
                async with contextlib.aclosing(chunks):
                    async for chunk, hit in chunks:
                        reached = [m for m in marks if any(w.end > m[1] for w in chunk.words)]
                        marks = [m for m in marks if m not in reached]
                        if not started:
                            started = True
                            TTS_TIME_TO_FIRST_AUDIO.labels(engine.name).observe(
                                time.perf_counter() - arrived
                            )
                        yield replace(
                            chunk,
                            marks=tuple(mark_times(reached, chunk.words, chunk.start_s)),
                            cache_hit=hit,
                            fallback=bool(plan.fallback_reason),
                            fallback_reason=plan.fallback_reason,
                        )
                return
            except (QueueFull, EngineError) as error:
                reason = OVERLOADED if isinstance(error, QueueFull) else ENGINE_ERROR
                if started or _own_excess(error) or not plan.switch_to_fallback(reason):
                    raise

    async def _render_stream(
        self, engine: Engine[PreparedItem], plan: _Plan, output: OutputFormat
    ) -> AsyncGenerator[SynthesisChunk, None]:
        """Renders the sentences live, one chunk each (the cache is the caller's door)."""
        items, tasks = await self._prepare_and_submit(engine, plan)
        pipeline = AudioPipeline(engine.sample_rate, output, plan.gain_db, streaming=True)
        timer = SentenceTimer(plan.aligned, plan.request.text, engine.sample_rate)
        try:
            for index, (item, task) in enumerate(zip(items, tasks, strict=True)):
                rendered = await _rendered(task, item, engine.sample_rate)
                words = (
                    timer.next(item.sentence, rendered.audio.size, rendered.words)
                    if plan.request.enable_word_timings
                    else []
                )
                last = index == len(items) - 1
                yield await _encode_chunk(
                    pipeline, output, rendered, item, index, plan, engine, words, last=last
                )
        finally:
            await _cancel(tasks)

    # ------------------------------------------------------------------ text streaming

    async def stream_segments(
        self, request: SynthesisRequest, segments: AsyncIterator[Segment]
    ) -> AsyncGenerator[SynthesisChunk, None]:
        """Chunks for text that arrives over time (StreamingSynthesizeText), in order.

        Each segment (a sentence, tts_service.streaming_text) goes through the same checks
        as a whole request (``_plan``) and is queued on the batcher the moment it arrives,
        while earlier ones are still rendering; one audio pipeline encodes them all, so the
        chunks form one stream. The voice is chosen once; falling back is possible only
        while the first sentence is admitted. Time to first audio counts from the first
        segment's arrival. The response cache is not used (the text is unknown up front).
        """
        stream_deadline = None
        if request.timeout_s is not None and math.isfinite(request.timeout_s):
            stream_deadline = time.monotonic() + request.timeout_s
        queued: asyncio.Queue[_Queued | BaseException | None] = asyncio.Queue()
        chosen: Voice | None = None  # the stream's voice, once its first sentence is queued

        async def admit() -> None:
            nonlocal chosen
            try:
                async for segment in segments:
                    if not is_speakable(normalize(segment.text)):
                        continue
                    remaining = (
                        None if stream_deadline is None else stream_deadline - time.monotonic()
                    )
                    plan = await self._plan(
                        replace(request, text=segment.text, timeout_s=remaining)
                    )
                    if chosen is not None:
                        plan.voice = chosen
                    try:
                        entry = await self._admit_segment(plan, segment, first=not chosen)
                    except BaseException:
                        plan.held.close()
                        raise
                    await queued.put(entry)
                    chosen = plan.voice
                await queued.put(None)
            except BaseException as error:
                await queued.put(error)
                if not isinstance(error, Exception):
                    raise

        admitting = asyncio.create_task(admit())
        pipeline: AudioPipeline | None = None
        index = 0
        last: SynthesisChunk | None = None
        first_ready: float | None = None
        try:
            while (entry := await queued.get()) is not None:
                if isinstance(entry, BaseException):
                    raise entry
                try:
                    engine, output = self.engines[entry.plan.voice.engine], entry.plan.output()
                    if pipeline is None:
                        pipeline = AudioPipeline(
                            engine.sample_rate, output, entry.plan.gain_db, streaming=True
                        )
                        first_ready = entry.segment.ready_at
                    timer = SentenceTimer(
                        entry.plan.aligned,
                        entry.segment.text,
                        engine.sample_rate,
                        offset_s=pipeline.samples / output.sample_rate,
                        char_offset=entry.segment.start,
                    )
                    for item, task in zip(entry.items, entry.tasks, strict=True):
                        rendered = await _rendered(task, item, engine.sample_rate)
                        words = (
                            timer.next(item.sentence, rendered.audio.size, rendered.words)
                            if request.enable_word_timings
                            else []
                        )
                        last = await _encode_chunk(
                            pipeline, output, rendered, item, index, entry.plan, engine, words
                        )
                        if first_ready is not None:
                            TTS_TIME_TO_FIRST_AUDIO.labels(engine.name).observe(
                                time.perf_counter() - first_ready
                            )
                            first_ready = None
                        yield last
                        index += 1
                finally:
                    await _cancel(entry.tasks)
                    entry.plan.held.close()  # its memory reservation
            if pipeline is not None and last is not None:
                before = pipeline.samples
                tail = await asyncio.to_thread(pipeline.finish)
                if tail:  # what the resampler and encoder held back, after the last sentence
                    yield replace(
                        last,
                        audio=tail,
                        text="",
                        duration_s=(pipeline.samples - before) / last.sample_rate,
                        start_s=before / last.sample_rate,
                    )
        finally:
            admitting.cancel()
            with contextlib.suppress(BaseException):
                await admitting
            while not queued.empty():
                entry = queued.get_nowait()
                if isinstance(entry, _Queued):
                    await _cancel(entry.tasks)
                    entry.plan.held.close()

    async def _admit_segment(self, plan: _Plan, segment: Segment, *, first: bool) -> _Queued:
        """Prepares and queues one segment's sentences (falling back only for the first)."""
        while True:
            engine = self.engines[plan.voice.engine]
            try:
                items, tasks = await self._prepare_and_submit(engine, plan)
                return _Queued(plan, segment, items, tasks)
            except QueueFull as error:
                if not first or _own_excess(error) or not plan.switch_to_fallback(OVERLOADED):
                    raise

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
        spills = self.spills(route)
        self._precheck(request, route, spills)
        if len(text) <= INLINE_TEXT_CHARS:
            spoken = _split(request)
        else:
            spoken = await self.prep.run(request.caller, _split, request)
        normalized = spoken.aligned.text
        sentences = spoken.sentences
        seconds = check_text_limits(normalized, len(sentences), speaking_rate, self.settings)
        if not sentences:
            raise InvalidArgument(
                "text has nothing to speak once emoji, symbols and characters of scripts "
                "the English voices cannot read are left out"
            )
        if request.ssml and len(sentences) > MAX_ITEMS_PER_REQUEST:
            raise InvalidArgument(
                f"SSML text has {len(sentences)} sentences; at most {MAX_ITEMS_PER_REQUEST} "
                "per request (sentences with their own rate or pauses are not joined)"
            )
        if not request.ssml:
            sentences = pack_sentences(sentences, MAX_ITEMS_PER_REQUEST, DEFAULT_MAX_SENTENCE_CHARS)
        plan = _Plan(
            replace(request, marks=(*request.marks, *spoken.marks)),
            route,
            normalized,
            sentences,
            speaking_rate,
            gain_db,
            deadline,
            spills=spills,
        )
        plan.aligned = spoken.aligned
        plan.styles = spoken.styles or [PLAIN] * len(sentences)
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
            for sentence, style in zip(plan.sentences, plan.styles, strict=True):
                try:
                    item = engine.prepare(sentence, voice, _clamp_rate(rate * style.rate))
                    if style.pause_before_s or style.pause_after_s:
                        item = replace(
                            item,
                            pause_before_s=style.pause_before_s,
                            pause_after_s=style.pause_after_s,
                        )
                    items.append(item)
                except InvalidArgument:
                    log.debug("sentence dropped: nothing to say", extra={"voice": voice.name})
            return items

        items = await self.prep.run(plan.request.caller, prepare_all)
        for item in items:
            engine.observe_prepared(len(item.sentence), item.cost)
        if not items:
            raise InvalidArgument(f"text has nothing that voice {voice.name} can speak")
        return items

    def spills(self, route: Route) -> bool:
        """Whether ``route``'s stand-in takes its voice's overload (tts.overload_fallback):
        under "adds_capacity", only from another device or at a lower learnt compute per
        phoneme on the same one. Moving work onto the same cores at a higher cost per
        sentence serves fewer callers, not more."""
        policy = self.settings.overload_fallback
        if route.fallback is None or policy == "never":
            return False
        if policy == "always":
            return True
        source = self.engines[route.voice.engine]
        target = self.engines.get(route.fallback.engine)
        if target is None:
            return False
        if target.device != source.device:
            return True
        own, theirs = source.core_seconds_per_phoneme(), target.core_seconds_per_phoneme()
        return own is None or theirs is None or theirs < own

    def _precheck(self, request: SynthesisRequest, route: Route, spills: bool) -> None:
        """Refuses (Overloaded) before any text work a request that would finish too late
        even at its length as sent (spelling out only lengthens it) on its voice and on
        its stand-in: a flood of long texts then costs little."""
        sentences = max(len(request.text) // DEFAULT_MAX_SENTENCE_CHARS, 1)
        stand_in = route.fallback if spills else None
        voices = [v for v in (route.voice, stand_in) if v is not None]
        for index, voice in enumerate(voices):
            try:
                with self.engines[voice.engine].reserve(
                    len(request.text),
                    sentences,
                    priority=_last_level(request.priority, sentences),
                    timeout_s=request.timeout_s,
                    caller=request.caller,
                ):
                    return
            except QueueFull as error:
                if index == len(voices) - 1 or _own_excess(error):
                    raise

    async def _prepare_and_submit(
        self, engine: Engine[PreparedItem], plan: _Plan
    ) -> tuple[list[PreparedItem], list[asyncio.Task[RenderedSentence]]]:
        """Admits the request on ``engine`` before phonemizing it (a burst is refused on
        arrival, not after its phonemes are made), then phonemizes and queues every item."""
        with engine.reserve(
            len(plan.normalized),
            len(plan.sentences),
            # judged where its last sentence will queue: the whole request must finish
            priority=_last_level(plan.request.priority, len(plan.sentences)),
            timeout_s=plan.remaining_s(),
            caller=plan.request.caller,
        ) as promise:
            items = await self._prepare(engine, plan)
            promise.release()
            tasks = await self._submit_all(engine, plan, items)
        return items, tasks

    async def _submit_all(
        self, engine: Engine[PreparedItem], plan: _Plan, items: list[PreparedItem]
    ) -> list[asyncio.Task[RenderedSentence]]:
        """Queues every item; raises QueueFull (with nothing left queued) if they do not fit."""
        engine.check_room(len(items), plan.request.caller)
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


@dataclass
class _Queued:
    """A segment of a text stream whose sentences are on the batcher."""

    plan: _Plan
    segment: Segment
    items: list[PreparedItem]
    tasks: list[asyncio.Task[RenderedSentence]]


def _clamp_rate(rate: float) -> float:
    return min(max(rate, MIN_SPEAKING_RATE), MAX_SPEAKING_RATE)


async def _rendered(
    task: asyncio.Task[RenderedSentence], item: PreparedItem, sample_rate: int
) -> RenderedSentence:
    """The item's audio with the silences SSML breaks ask for around it."""
    rendered = await task
    if not (item.pause_before_s or item.pause_after_s):
        return rendered
    return with_pauses(rendered, item.pause_before_s, item.pause_after_s, sample_rate)


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
            # Only where asked for, so every other key stays what it was.
            **({"word_timings": True} if plan.request.enable_word_timings else {}),
            **({"styles": [astuple(s) for s in plan.styles]} if plan.request.ssml else {}),
        },
    )


@dataclass(frozen=True)
class _Spoken:
    """A request's text made ready to speak: normalised (mapped back to the request's
    characters), cut into sentences, with SSML's per-sentence styles and marks."""

    aligned: AlignedText
    sentences: list[str]
    styles: list[SentenceStyle]
    marks: tuple[tuple[str, int], ...]


def _last_level(request_priority: int, sentences: int) -> int:
    """The batcher level a request's last sentence queues at (see SENTENCE_LEVELS)."""
    first = request_priority * SENTENCE_LEVELS + SENTENCE_LEVELS - 1
    return first - min(max(sentences, 1) - 1, SENTENCE_LEVELS - 1)


def _own_excess(error: BaseException) -> bool:
    """A refusal for the caller's own waiting work: the other engine is not tried (it
    would only spread one caller's flood over both)."""
    return isinstance(error, CallerOverloaded)


def _split(request: SynthesisRequest) -> _Spoken:
    if request.ssml:
        document = ssml.parse(request.text)
        aligned, sentences, styles = ssml.spoken_sentences(document, DEFAULT_MAX_SENTENCE_CHARS)
        return _Spoken(aligned, sentences, styles, tuple(document.marks))
    aligned = normalize_aligned(request.text)
    return _Spoken(aligned, split_sentences(aligned.text, DEFAULT_MAX_SENTENCE_CHARS), [], ())


async def _encode_chunk(
    pipeline: AudioPipeline,
    output: OutputFormat,
    rendered: RenderedSentence,
    item: PreparedItem,
    index: int,
    plan: _Plan,
    engine: Engine[PreparedItem],
    words: list[WordTime],
    *,
    last: bool = False,
) -> SynthesisChunk:
    """One sentence through the stream's audio pipeline (its encoder's end too if ``last``)."""
    before = pipeline.samples
    data = await asyncio.to_thread(_encode_piece, pipeline, rendered.audio, last)
    return SynthesisChunk(
        audio=data,
        index=index,
        text=item.sentence,
        encoding=output.encoding,
        sample_rate=output.sample_rate,
        duration_s=(pipeline.samples - before) / output.sample_rate,
        engine=engine.name,
        voice=plan.voice.name,
        fallback=bool(plan.fallback_reason),
        fallback_reason=plan.fallback_reason,
        start_s=before / output.sample_rate,
        words=tuple(words),
    )


def _encode_piece(pipeline: AudioPipeline, audio: np.ndarray, last: bool) -> bytes:
    data = pipeline.push(audio)
    return data + pipeline.finish() if last else data


async def _cancel(tasks: Sequence[asyncio.Task[RenderedSentence]]) -> None:
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
