"""What the Piper and Kokoro engines share: a batcher over a pool of model instances.

An engine turns one sentence into a prepared item (phonemes, the cost the batcher packs by)
on the caller's side, and renders batches of prepared items to float32 audio in its
instances' threads. Failures inside the model become ``EngineError`` so routing can tell an
engine that is failing from a request that is wrong.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import grpc
import numpy as np
import onnxruntime as ort

from batcher import Batcher, BatchFunction, QueueFull, RecordingObserver, Reservation
from speech_platform.batching import make_batcher
from speech_platform.config import BatcherSettings
from speech_platform.errors import FailedPrecondition, SpeechError
from speech_platform.metrics import ENGINE_AUDIO_SECONDS
from tts_service.timings import SpokenWord
from tts_service.voices import Voice

log = logging.getLogger(__name__)

#: What each instance says first at start: its first run's one-time costs are paid here.
WARM_UP_SENTENCE = "Hello there."
#: What each instance says next, for the compute rate admission starts from: a sentence of
#: ordinary length (two words are mostly a call's fixed overhead, which makes the learnt
#: cost per phoneme dear; Kokoro's was ~2.5x what real sentences cost).
RATE_SENTENCE = "Your appointment is confirmed for nine thirty on Monday."


class EngineError(SpeechError):
    """The model failed on an item that passed validation: the engine, not the caller, is
    at fault, so the other engine may serve the request instead."""

    #: A failing model is the server's trouble, and another replica may be healthy.
    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, engine: str, message: str) -> None:
        super().__init__(f"{engine} engine failed: {message}")
        self.engine = engine


@dataclass(frozen=True)
class PreparedItem:
    """One sentence, ready for the model; ``cost`` (phonemes) is what batches are bounded by."""

    sentence: str
    voice: Voice
    speaking_rate: float
    cost: int
    payload: Any
    #: Silence around the sentence's audio (SSML <break>), added after rendering.
    pause_before_s: float = 0.0
    pause_after_s: float = 0.0
    #: Give ONNX Runtime's arena back after this item's run (the warm-up's rate sentence:
    #: it should teach the rate, not hold the memory its length needs at idle).
    shrink_arena_after: bool = False


#: Run options that free the CPU arena's unused chunks once the run is done.
_SHRINK_ARENA = ort.RunOptions()
_SHRINK_ARENA.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")


def run_options(items: Sequence[PreparedItem]) -> ort.RunOptions | None:
    """The options for one ONNX call over ``items`` (see ``shrink_arena_after``)."""
    return _SHRINK_ARENA if any(item.shrink_arena_after for item in items) else None


@dataclass(frozen=True)
class RenderedSentence:
    """An item's audio (float32 mono at the engine's rate) and when each word is spoken."""

    audio: np.ndarray
    words: tuple[SpokenWord, ...] = ()


def with_pauses(
    rendered: RenderedSentence, before_s: float, after_s: float, sample_rate: int
) -> RenderedSentence:
    """``rendered`` with silence before and after (its word times moved along)."""
    lead = np.zeros(round(before_s * sample_rate), np.float32)
    tail = np.zeros(round(after_s * sample_rate), np.float32)
    shift = lead.size / sample_rate
    words = tuple(
        replace(w, start_s=w.start_s + shift, end_s=w.end_s + shift) for w in rendered.words
    )
    return RenderedSentence(np.concatenate([lead, rendered.audio, tail]), words)


@dataclass(frozen=True)
class Completion:
    """When an engine finished a sentence (time.monotonic); kept for observability."""

    sentence: str
    finished_at: float


Prepared = TypeVar("Prepared", bound=PreparedItem)


class Engine(abc.ABC, Generic[Prepared]):
    """A TTS model served through a dynamic batcher on ``instances`` model instances."""

    #: "piper" or "kokoro": the batcher's model label and what responses report.
    name: str
    #: The rate the model produces audio at.
    sample_rate: int
    #: Identifies the weights (a SHA-256), so cache entries die with a model change.
    model_version: str
    #: Compute threads of one instance (0: onnxruntime's choice), for shared admission.
    threads_per_instance: int = 1
    #: Computes on this process's CPU (False on a GPU).
    on_cpu: bool = True
    #: What it computes on ("cpu", "cuda"): engines on one device share its capacity.
    device: str = "cpu"
    #: What runs the weights: inference libraries with their versions and the device /
    #: execution providers, so cache entries die with a change of either.
    runtime: str

    def __init__(self, batcher_settings: BatcherSettings, instances: int) -> None:
        self._batcher_settings = batcher_settings
        self._instances = instances
        self._batcher: Batcher[Prepared, RenderedSentence] | None = None
        self.recording: RecordingObserver | None = None
        #: The last sentences rendered, newest last.
        self.completions: deque[Completion] = deque(maxlen=4096)
        #: Batcher cost (phonemes) per character of normalised text, learnt from what was
        #: prepared: admission judges a request by it before phonemizing anything.
        self.cost_per_char = 1.0

    # ------------------------------------------------------------------ lifecycle

    @abc.abstractmethod
    def load(self) -> None:
        """Reads what every instance shares (config, voices, phonemizer); blocking."""

    @abc.abstractmethod
    def voices(self) -> list[Voice]:
        """The voices this engine offers (after ``load``)."""

    @abc.abstractmethod
    def prepare(self, sentence: str, voice: Voice, speaking_rate: float) -> Prepared:
        """Phonemizes one sentence; blocking, so callers run it in a thread.

        Raises InvalidArgument when the sentence has nothing this voice can say.
        """

    @abc.abstractmethod
    def build_instance(self, index: int) -> BatchFunction[Prepared, RenderedSentence]:
        """Loads one model instance (in its own thread) and returns its batch function."""

    async def start(self) -> None:
        await asyncio.to_thread(self.load)
        batcher, recording = make_batcher(
            self._instance_factory,
            self._batcher_settings,
            model=self.name,
            instances=self._instances,
            threads=self.threads_per_instance,
            on_cpu=self.on_cpu,
        )
        await batcher.start()
        # Per instance a short sentence, so the first caller does not pay the first run,
        # then one of ordinary length that the compute rate is learnt from: admission
        # predicts nothing without a rate, and an engine reached only by fallback would
        # admit a whole burst.
        voice = self.voices()[0]
        for round_, sentence in enumerate((WARM_UP_SENTENCE, RATE_SENTENCE)):
            item = await asyncio.to_thread(self.prepare, sentence, voice, 1.0)
            self.observe_prepared(len(sentence), item.cost)
            if round_:
                batcher.forget_rate()
                item = replace(item, shrink_arena_after=True)
            await asyncio.gather(
                *(batcher.submit(item, cost=item.cost) for _ in range(self._instances))
            )
        self._batcher, self.recording = batcher, recording
        log.info(
            "engine ready",
            extra={"engine": self.name, "instances": self._instances, "voices": len(self.voices())},
        )

    async def stop(self, grace_s: float | None = None) -> None:
        if self._batcher is not None:
            await self._batcher.close(grace_s)

    @property
    def started(self) -> bool:
        return self._batcher is not None and not self._batcher.closed

    # ------------------------------------------------------------------ serving

    def observe_prepared(self, chars: int, cost: int) -> None:
        """Learns the cost per character from text just phonemized (smoothed)."""
        if chars > 0 and cost > 0:
            self.cost_per_char += 0.2 * (cost / chars - self.cost_per_char)

    def reserve(
        self,
        chars: int,
        items: int,
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        caller: str | None = None,
    ) -> Reservation:
        """Admits ``chars`` of normalised text in ``items`` sentences before they are
        phonemized (see ``Batcher.reserve``): Overloaded when predicted too late."""
        return self._require_batcher().reserve(
            chars * self.cost_per_char,
            priority=priority,
            timeout_s=timeout_s,
            items=items,
            caller=caller,
        )

    def core_seconds_per_phoneme(self) -> float | None:
        """Its learnt compute per phoneme (None until it rendered a sentence)."""
        return self._require_batcher().core_seconds_per_cost

    def check_room(self, items: int, caller: str | None = None) -> None:
        """Raises QueueFull when ``items`` more would overflow the queue (the engine is
        overloaded), CallerOverloaded when they would pass ``caller``'s share of it."""
        self._require_batcher().check_room(items, caller)

    async def render(
        self,
        item: Prepared,
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        caller: str | None = None,
    ) -> RenderedSentence:
        """The item's audio and word times; ``caller`` for fair queuing."""
        batcher = self._require_batcher()
        return await batcher.submit(
            item, cost=item.cost, priority=priority, timeout_s=timeout_s, caller=caller
        )

    def _require_batcher(self) -> Batcher[Prepared, RenderedSentence]:
        if self._batcher is None:
            raise FailedPrecondition(f"the {self.name} engine is not started")
        return self._batcher

    def _instance_factory(self, index: int) -> BatchFunction[Prepared, RenderedSentence]:
        run_batch = self.build_instance(index)
        audio_seconds = ENGINE_AUDIO_SECONDS.labels(self.name)

        def observed(items: list[Prepared]) -> Sequence[RenderedSentence | BaseException]:
            outcomes = run_batch(items)
            now = time.monotonic()
            for item, outcome in zip(items, outcomes, strict=True):
                if isinstance(outcome, RenderedSentence):
                    audio_seconds.inc(outcome.audio.size / self.sample_rate)
                    self.completions.append(Completion(item.sentence, now))
            return outcomes

        return observed


def session_options(threads: int) -> ort.SessionOptions:
    """One sequential session using ``threads`` cores (0: onnxruntime's default, all).

    Memory patterns off: every sentence has another length, so a pattern planned for one
    shape is never reused and only holds memory. The CPU arena stays on: without it every
    call maps and faults in its activations afresh (Piper, two runners on one session:
    11.5 audio s/s instead of 12.9, and 7.0 with malloc's mmap threshold pinned).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_mem_pattern = False
    return options


def peak_normalize(audio: np.ndarray) -> np.ndarray:
    """Scales to a peak of 1.0, as PiperVoice.synthesize() does (silence stays silence)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-8:
        return np.zeros_like(audio, dtype=np.float32)
    return (audio / peak).astype(np.float32)


def engine_failure(engine: str, error: BaseException) -> BaseException:
    """Wraps a model failure as EngineError; the batcher's own verdicts pass through."""
    if isinstance(error, SpeechError | QueueFull):
        return error
    return EngineError(engine, f"{type(error).__name__}: {error}")
