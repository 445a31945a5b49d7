"""Speech to text for any caller in the process: the gRPC servicer, the Jobs service, streaming.

A ``Transcriber`` owns one dynamic batcher per loaded Whisper model (label
"whisper-<name>"), each with ``stt.instances`` engine instances. A batch item is one window
of one request (never two requests' audio in one input: see whisper_engine). Audio of up
to 30 s is one window, decoded without a VAD pass; longer audio is cut at pauses (see
windowing) and its windows are submitted at once. When Whisper leaves a window's last
segment open, the rest of the window is decoded from the last closed segment on (Whisper's
own seek rule), so no word is decoded twice or dropped. Results come back in order, with
absolute times.

    transcriber = Transcriber(settings.stt)
    await transcriber.start()
    transcript = await transcriber.transcribe(samples, TranscribeOptions(language="en"))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np

from batcher import Batcher, BatchFunction, RecordingObserver, Reservation
from speech_platform.batching import make_batcher
from speech_platform.config import SttSettings
from speech_platform.errors import InvalidArgument, NotFound
from speech_platform.fingerprint import files_digest, versions_of
from speech_platform.metrics import ENGINE_AUDIO_SECONDS
from stt_service.assembly import Transcript, build_transcript
from stt_service.assets import MODELS, model_path
from stt_service.options import (
    MAX_PROMPT_CHARS,
    DecodeOptions,
    TranscribeOptions,
    check_alternatives,
    check_beam_size,
    check_prompt,
    parse_language,
    parse_task,
)
from stt_service.whisper_engine import (
    DEFAULT_BUCKETS_S,
    DEFAULT_MARGIN_S,
    MEL_FRAMES_PER_SECOND,
    SAMPLE_RATE,
    EngineConfig,
    WhisperEngine,
    WindowItem,
    WindowResult,
    encoder_frames,
)
from stt_service.windowing import MAX_WINDOW_S, Window, plan_windows_async

log = logging.getLogger(__name__)

#: Called as windows finish: (windows done, windows in all).
ProgressCallback = Callable[[int, int], None]
#: How many times the rest of one window may be decoded again.
MAX_CONTINUATIONS = 3
#: Priority levels a continuation gets above its request: the request has waited its turn
#: once, so the rest of its window goes ahead of newer arrivals instead of queueing a second
#: time behind them (it shortens the tail; figures: docs/benchmarks.md, "Figures behind
#: defaults").
CONTINUATION_PRIORITY_BOOST = 1
#: The libraries whose release can change a transcript (part of every cache key).
ENGINE_VERSION = versions_of("faster-whisper", "ctranslate2")


@dataclass
class LoadedModel:
    """A model the server serves, and the facts ListModels reports about it."""

    name: str
    #: The batcher's model label in metrics, e.g. "whisper-tiny.en".
    label: str
    instances: int
    batcher: Batcher[WindowItem, WindowResult]
    observer: RecordingObserver
    multilingual: bool = False
    languages: tuple[str, ...] = ()
    device: str = ""
    compute_type: str = ""
    #: The engine instances (their counters show e.g. which encoder lengths were used).
    engines: tuple[WhisperEngine, ...] = ()
    encoder_buckets_s: tuple[float, ...] = DEFAULT_BUCKETS_S
    encoder_margin_s: float = DEFAULT_MARGIN_S
    #: The model files' digest (speech_platform.fingerprint.files_digest), taken at load.
    weights_digest: str = ""
    #: The inference libraries' versions (faster-whisper, CTranslate2).
    engine_version: str = ""

    def frames_for(self, num_samples: int) -> int:
        """The encoder length (mel frames) a window of ``num_samples`` is decoded at."""
        return encoder_frames(num_samples, self.encoder_buckets_s, self.encoder_margin_s)


@dataclass(frozen=True)
class ResolvedOptions:
    """A request's options checked against a loaded model, every default filled in."""

    model: LoadedModel = field(compare=False)
    decode: DecodeOptions
    #: Transcribe each channel on its own (stt_service/channels.py).
    separate_channels: bool = False
    #: Attach a quality report (stt_service/quality.py).
    quality_report: bool = False

    def cache_parts(self) -> dict[str, Any]:
        """Everything here that changes the transcript, for the response cache key: the
        weights, the numeric setup (device, compute type) and the engine's release as well
        as the request's own options."""
        parts: dict[str, Any] = {
            "model": self.model.name,
            "weights": self.model.weights_digest,
            "device": self.model.device,
            "compute_type": self.model.compute_type,
            "engine": self.model.engine_version,
            "language": self.decode.language or "auto",
            "beam_size": self.decode.beam_size,
            "word_timestamps": self.decode.word_timestamps,
            "initial_prompt": self.decode.initial_prompt,
            "hotwords": list(self.decode.hotwords),
            # Absent for transcription, so keys cached before tasks existed still hit.
            **({"task": self.decode.task} if self.decode.task != "transcribe" else {}),
        }
        # What a response holds besides the transcript; named only when asked for, so the
        # keys of plain requests stay those they always were.
        extras = {
            "alternatives": self.decode.alternatives,
            "separate_channels": self.separate_channels,
            "quality_report": self.quality_report,
        }
        return parts | {name: value for name, value in extras.items() if value}


class Transcriber:
    """Loads the configured Whisper models and transcribes 16 kHz mono audio with them."""

    def __init__(self, settings: SttSettings, *, model_dir: Path | None = None):
        self.settings = settings
        self._model_dir = model_dir
        names = list(dict.fromkeys([self.settings.default_model, *self.settings.models]))
        unknown = [name for name in names if name not in MODELS]
        if unknown:
            raise ValueError(
                f"stt.models names unknown model(s) {unknown}; known: {sorted(MODELS)}"
            )
        self._names = names
        self.device = _resolve_device(self.settings.device)
        self._models: dict[str, LoadedModel] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Loads every model (all instances in parallel, each in its own thread)."""
        for name in self._names:
            self._models[name] = await self._load(name)

    async def _load(self, name: str) -> LoadedModel:
        path = await asyncio.to_thread(model_path, name, self._model_dir)
        weights = await asyncio.to_thread(files_digest, path)
        settings = self.settings
        device = self.device
        gpus = ctranslate2.get_cuda_device_count() if device == "cuda" else 0
        engines: list[WhisperEngine] = []

        def factory(index: int) -> BatchFunction[WindowItem, WindowResult]:
            engine = WhisperEngine(
                EngineConfig(
                    model_path=path,
                    device=device,
                    device_index=index % gpus if gpus else 0,
                    compute_type=settings.compute_type,
                    cpu_threads=settings.cpu_threads,
                    encoder_buckets_s=tuple(settings.encoder_buckets_s),
                    encoder_margin_s=settings.encoder_margin_s,
                )
            )
            engines.append(engine)
            return engine.run_batch

        label = f"whisper-{name}"
        batcher, observer = make_batcher(
            factory,
            settings.batcher,
            model=label,
            instances=settings.instances,
            threads=settings.cpu_threads,
            on_cpu=device == "cpu",
        )
        await batcher.start()
        await _warm_up(batcher, settings)
        first = engines[0]
        log.info(
            "loaded whisper model",
            extra={
                "model": name,
                "instances": settings.instances,
                "device": first.device,
                "compute_type": first.compute_type,
            },
        )
        return LoadedModel(
            name=name,
            label=label,
            instances=settings.instances,
            batcher=batcher,
            observer=observer,
            multilingual=first.multilingual,
            languages=tuple(first.languages),
            device=first.device,
            compute_type=first.compute_type,
            engines=tuple(engines),
            encoder_buckets_s=tuple(settings.encoder_buckets_s),
            encoder_margin_s=settings.encoder_margin_s,
            weights_digest=weights,
            engine_version=ENGINE_VERSION,
        )

    async def stop(self, grace_s: float | None = None) -> None:
        """Lets queued windows finish within ``grace_s``, then frees every model."""
        await asyncio.gather(*(m.batcher.close(grace_s) for m in self._models.values()))
        self._models.clear()

    # ------------------------------------------------------------------ models

    @property
    def ready(self) -> bool:
        """True once every configured model is loaded."""
        return len(self._models) == len(self._names)

    @property
    def default_model(self) -> str:
        return self.settings.default_model

    def models(self) -> list[LoadedModel]:
        return list(self._models.values())

    def model(self, name: str = "") -> LoadedModel:
        """The loaded model called ``name`` ("" = default); NotFound names the choices."""
        wanted = name or self.settings.default_model
        loaded = self._models.get(wanted)
        if loaded is None:
            choices = ", ".join(repr(n) for n in self._models) or "none loaded yet"
            raise NotFound(f"model {wanted!r} is not served here; available: {choices}")
        return loaded

    # ------------------------------------------------------------------ requests

    def resolve(self, options: TranscribeOptions) -> ResolvedOptions:
        """Checks a request's options against the loaded models; raises with a clear message."""
        model = self.model(options.model)
        language = parse_language(options.language)
        if language is not None and language not in model.languages:
            if not model.multilingual:
                others = [m.name for m in self._models.values() if m.multilingual]
                hint = (
                    f"; use a multilingual model ({', '.join(others)})"
                    if others
                    else "; this server loads no multilingual model"
                )
                raise InvalidArgument(
                    f"model {model.name!r} transcribes English only, so language_code "
                    f"{options.language!r} cannot be served{hint}"
                )
            raise InvalidArgument(
                f"language_code {options.language!r} is not one of the languages model "
                f"{model.name!r} knows (see ListModels)"
            )
        if language is None and not model.multilingual:
            language = model.languages[0] if model.languages else "en"
        task = parse_task(options.task)
        if task == "translate" and not model.multilingual:
            others = [m.name for m in self._models.values() if m.multilingual]
            hint = f"; use {', '.join(others)}" if others else "; none is loaded here"
            raise InvalidArgument(
                f"model {model.name!r} is English-only and cannot translate: translation "
                f"needs a multilingual model{hint}"
            )
        beam_size = check_beam_size(options.beam_size, self.settings.default_beam_size)
        prompt, hotwords = check_prompt(options.initial_prompt, options.hotwords)
        return ResolvedOptions(
            model,
            DecodeOptions(
                language=language,
                beam_size=beam_size,
                word_timestamps=options.word_timestamps,
                initial_prompt=prompt,
                hotwords=hotwords,
                alternatives=check_alternatives(options.max_alternatives, beam_size),
                task=task,
            ),
            separate_channels=options.separate_channels,
            quality_report=options.quality_report,
        )

    def reserve(
        self,
        resolved: ResolvedOptions,
        priority: int,
        timeout_s: float | None,
        audio_seconds: float | None = None,
        caller: Hashable | None = None,
    ) -> Reservation:
        """Admits a request before its audio is decoded (see ``Batcher.reserve``): raises
        Overloaded when its windows would finish after ``timeout_s``, else holds their cost
        against later arrivals until released (release it before ``transcribe``).

        ``audio_seconds``: the duration when known from the request's size (raw PCM);
        unknown (a container), the shortest window is reserved.
        """
        model = resolved.model
        window = int(MAX_WINDOW_S * SAMPLE_RATE)
        if audio_seconds is None:
            cost = model.frames_for(1) / MEL_FRAMES_PER_SECOND
        else:
            full, rest = divmod(max(round(audio_seconds * SAMPLE_RATE), 1), window)
            cost = full * model.frames_for(window) / MEL_FRAMES_PER_SECOND
            if rest:
                cost += model.frames_for(rest) / MEL_FRAMES_PER_SECOND
        return model.batcher.reserve(
            cost, priority=priority, timeout_s=timeout_s, caller=caller
        )

    async def transcribe(
        self,
        samples: np.ndarray,
        options: TranscribeOptions | ResolvedOptions,
        *,
        priority: int = 1,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        caller: Hashable | None = None,
    ) -> Transcript:
        """Transcribes 16 kHz mono float32 audio of any length.

        ``priority``: batcher scale (0 low, 1 normal, 2 high); ``timeout_s``: the caller's
        remaining deadline, after which windows still waiting are dropped (DeadlineExpired);
        ``caller``: who asks, for fair queuing between callers.
        Silent audio is not decoded (silence gives an empty text). When Whisper leaves a
        window's last segment open, the rest of that window is decoded too (on_progress's
        total then grows by one).
        """
        resolved = options if isinstance(options, ResolvedOptions) else self.resolve(options)
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(samples) == 0:
            raise InvalidArgument("audio contains no samples")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        windows = await plan_windows_async(samples)
        spoken = [w for w in windows if w.has_speech]
        progress = _Progress(len(spoken), on_progress)
        tasks = [
            asyncio.ensure_future(
                self._decode_to_the_end(
                    samples, window, resolved, priority, deadline, progress, caller
                )
            )
            for window in spoken
        ]
        try:
            decoded = await asyncio.gather(*tasks)
        finally:
            await _cancel_unfinished(tasks)
        duration = len(samples) / SAMPLE_RATE
        ENGINE_AUDIO_SECONDS.labels(resolved.model.label).inc(duration)
        return build_transcript(
            [piece for pieces in decoded for piece in pieces],
            model=resolved.model.name,
            duration_s=duration,
            fallback_language=resolved.decode.language or "",
            max_alternatives=resolved.decode.alternatives,
        )

    async def _decode_to_the_end(
        self,
        samples: np.ndarray,
        window: Window,
        resolved: ResolvedOptions,
        priority: int,
        deadline: float | None,
        progress: _Progress,
        caller: Hashable | None = None,
    ) -> list[tuple[Window, WindowResult]]:
        """Decodes a window, then the rest of it while Whisper leaves its last segment open.

        Each piece ends where the next begins (``WindowResult.resume_at``), so the pieces
        partition the window's time: nothing is transcribed twice.
        """
        pieces: list[tuple[Window, WindowResult]] = []
        current = window
        options = resolved.decode
        for attempt in range(MAX_CONTINUATIONS + 1):
            level = priority + (CONTINUATION_PRIORITY_BOOST if attempt else 0)
            result = await self._submit(
                resolved, current.take(samples), level, deadline, options=options, caller=caller
            )
            pieces.append((current, result))
            if result.resume_at is None or attempt == MAX_CONTINUATIONS:
                break
            log.debug(
                "whisper left its last segment open; decoding the rest of the window",
                extra={
                    "model": resolved.model.name,
                    "at_s": round(current.absolute_s(result.resume_at), 2),
                },
            )
            progress.grow()
            progress.advance()
            current = current.after(result.resume_at)
            # Like faster-whisper, the rest is decoded with the text so far as its prompt:
            # it keeps a sentence's first word ("And ...") that a cold start tends to drop.
            options = replace(options, initial_prompt=_joined_prompt(options, result))
        progress.advance()
        return pieces

    async def _submit(
        self,
        resolved: ResolvedOptions,
        window: np.ndarray,
        priority: int,
        deadline: float | None,
        *,
        options: DecodeOptions | None = None,
        caller: Hashable | None = None,
    ) -> WindowResult:
        return await resolved.model.batcher.submit(
            WindowItem(window, options or resolved.decode),
            # The encoder length it will be decoded at: similar costs batch together.
            cost=resolved.model.frames_for(len(window)) / MEL_FRAMES_PER_SECOND,
            priority=priority,
            timeout_s=None if deadline is None else deadline - time.monotonic(),
            caller=caller,
        )

    async def decode_windows(
        self,
        resolved: ResolvedOptions,
        windows: Sequence[np.ndarray],
        *,
        priority: int = 1,
        timeout_s: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[WindowResult]:
        """Decodes <= 30 s windows once each (times relative to each window), all at once.

        The building block for streaming (no VAD, no second pass here). If one window
        fails, the others still waiting are withdrawn and the failure is raised.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        progress = _Progress(len(windows), on_progress)

        async def one(window: np.ndarray) -> WindowResult:
            result = await self._submit(resolved, window, priority, deadline)
            progress.advance()
            return result

        tasks = [asyncio.ensure_future(one(window)) for window in windows]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            await _cancel_unfinished(tasks)


class _Progress:
    """Counts finished windows for an on_progress callback (the total may grow)."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self._callback = callback

    def grow(self) -> None:
        self.total += 1

    def advance(self) -> None:
        self.done += 1
        if self._callback is not None:
            self._callback(self.done, self.total)


#: Short windows per instance at load, twice: the first round pays CTranslate2's
#: first-call costs so that no caller does; the batcher's compute rate is learnt from the
#: second (admission refuses nothing it cannot predict, so a burst at start-up would all
#: queue). The window is quiet noise, which Whisper decodes in one pass as it does a short
#: spoken command (tiny.en: 0.10-0.14 s at 0.0005-0.005, a 2.8 s command 0.12 s); at 0.01
#: its text is in doubt and the window is encoded again at full length (0.74 s), a rate
#: ~6x dear that refused most of a cold server's first burst.
_WARM_UP_SECONDS = 2.0
_WARM_UP_LEVEL = 0.002


async def _warm_up(batcher: Batcher[WindowItem, WindowResult], settings: SttSettings) -> None:
    noise = np.random.default_rng(0).normal(
        0.0, _WARM_UP_LEVEL, int(_WARM_UP_SECONDS * SAMPLE_RATE)
    )
    item = WindowItem(noise.astype(np.float32), DecodeOptions(language=None, beam_size=1))
    frames = encoder_frames(len(noise), settings.encoder_buckets_s, settings.encoder_margin_s)
    cost = frames / MEL_FRAMES_PER_SECOND
    for round_ in range(2):
        if round_:
            batcher.forget_rate()
        await asyncio.gather(*(batcher.submit(item, cost=cost) for _ in range(settings.instances)))


def _joined_prompt(options: DecodeOptions, result: WindowResult) -> str:
    """The prompt for the rest of a window: the caller's prompt, then the text so far
    (the engine keeps the prompt's last tokens when it is too long)."""
    text = " ".join(segment.text.strip() for segment in result.segments)
    return " ".join(part for part in (options.initial_prompt, text) if part)[-MAX_PROMPT_CHARS:]


async def _cancel_unfinished(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Withdraws what is still waiting after a failure (the batcher never computes it)."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def _resolve_device(device: str) -> str:
    """ "auto" picks CUDA when CTranslate2 sees a GPU; "cuda" without one fails clearly."""
    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if device == "cuda" and gpus == 0:
        raise ValueError("stt.device is 'cuda' but CTranslate2 sees no CUDA device")
    return device
