"""One Whisper model instance, decoding a batch of windows, each on its own audio only.

**Isolation.** A batch item is one window of ONE request. Items are only stacked along the
batch dimension, grouped by encoder length, never laid into a shared input: a window's
transcript never depends on, or contains, another request's audio (cross-request packing
was removed for that reason; tests/stt/test_isolation.py holds the line).

**Sizing.** CTranslate2's encoder accepts fewer than 3000 mel frames and its cost falls
steeply with length. A window is encoded at the smallest configured bucket that holds its
audio plus a margin of silence (the margin is how Whisper sees that speech ended). The bucket
depends on the window's own length only, so the same audio always decodes the same way.
Below about 10 s a shortened input sends Whisper into repetition loops on some real clips,
hence the smallest default bucket (docs/benchmarks.md has the per-clip study).

**Doubt.** A decode at a shortened length is kept only when Whisper closed its last segment
with a timestamp, the text does not repeat itself (gzip ratio) and is likely enough (mean
log-prob). Otherwise the window is decoded again at the full 30 s, as faster-whisper does.

**Continuation** (Whisper's own seek rule). When a decode ends inside a segment Whisper did
not close (speech cut at the window's end, or the token limit), the segments up to the
last closing timestamp are kept and ``resume_at`` tells the caller where to decode the rest
from. Nothing is decoded twice, nothing is dropped.

**Fallback.** Whisper's recipe re-samples at rising temperatures when a text is too
repetitive or unlikely. Sampling would make a result depend on what else the instance had
decoded before (CTranslate2's random generator lives in its worker thread and cannot be
seeded per call), so the fallback here is deterministic: beam search again with a
repetition penalty and no repeated 4-grams.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from batcher import RequestCancelled
from speech_platform.errors import InvalidArgument
from stt_service.alternatives import Alternative, join_texts, window_alternatives
from stt_service.options import DecodeOptions
from stt_service.segments import TimedTokens, split_segments
from stt_service.word_timing import TimedWord, words_from_alignment

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
WINDOW_FRAMES = 3000
#: Mel frames per second (hop of 160 samples).
MEL_FRAMES_PER_SECOND = 100
#: The decoder's context: prompt plus generated tokens.
MAX_LENGTH = 448
MAX_PROMPT_TOKENS = MAX_LENGTH // 2 - 1
#: Whisper's timestamp tokens count steps of this many seconds.
TIME_PRECISION = 0.02
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_FLOOR = -1.0
NO_SPEECH_THRESHOLD = 0.6
#: Encoder lengths (seconds) a window may be sized to; 30 s is always one of them.
DEFAULT_BUCKETS_S: tuple[float, ...] = (15.0, 20.0, 30.0)
#: Silence a sized window keeps after its audio.
DEFAULT_MARGIN_S = 1.0
#: Tokens a sized decode may generate per second of encoder input (plus a few): fast
#: speech stays far below; a repetition loop is cut short and decoded again at 30 s.
TOKENS_PER_SECOND = 15
#: The deterministic fallback's decoding settings (see the module docstring).
FALLBACK_SETTINGS: dict[str, Any] = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 4}
#: A continuation must start at least this far into its window and end this far before its
#: end; otherwise the window counts as done (no endless or empty continuations).
MIN_RESUME_S = 0.5


def encoder_frames(
    num_samples: int,
    buckets_s: Sequence[float] = DEFAULT_BUCKETS_S,
    margin_s: float = DEFAULT_MARGIN_S,
) -> int:
    """Mel frames a window of ``num_samples`` is encoded at: the smallest bucket that holds
    its audio plus ``margin_s``; 3000 (30 s) when none does.

    >>> encoder_frames(3 * 16000), encoder_frames(15.5 * 16000), encoder_frames(29 * 16000)
    (1500, 2000, 3000)
    """
    needed = num_samples / SAMPLE_RATE + margin_s
    for bucket in sorted(buckets_s):
        if bucket >= needed:
            return min(WINDOW_FRAMES, round(bucket * MEL_FRAMES_PER_SECOND))
    return WINDOW_FRAMES


@dataclass(frozen=True)
class WindowItem:
    """One batch item: at most 30 s of one request's 16 kHz mono audio and how to decode it."""

    samples: np.ndarray
    options: DecodeOptions
    #: Hook for callers that may withdraw an item the batcher already put in a batch:
    #: asked in the instance thread right before decoding; False skips the item (it
    #: gets RequestCancelled, never computed). Streaming supersedes stale interims so.
    should_decode: Callable[[], bool] | None = None


@dataclass(frozen=True)
class DecodedWord:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class DecodedSegment:
    """Times are relative to the window's start."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[DecodedWord, ...] = ()


@dataclass(frozen=True)
class WindowResult:
    segments: tuple[DecodedSegment, ...]
    language: str
    language_probability: float
    #: Window time from which the audio is still to be transcribed (Whisper's seek rule:
    #: its last segment was not closed); None when the whole window is done.
    resume_at: float | None = None
    #: The encoder length (mel frames) that produced this result.
    encoder_frames: int = WINDOW_FRAMES
    #: The beam's N-best for this window when the options asked for alternatives, best
    #: first; the first reads exactly as the segments (stt_service/alternatives.py).
    alternatives: tuple[Alternative, ...] = ()


@dataclass(frozen=True)
class EngineConfig:
    model_path: Path
    device: str = "cpu"
    device_index: int = 0
    compute_type: str = "int8"
    cpu_threads: int = 1
    #: Windows per encoder call on a CPU (0 = 1): the encoder is compute bound there and a
    #: batched call costs more CPU time than the same windows one by one (the decoder still
    #: runs batched). A GPU always encodes a whole group in one call.
    encoder_batch_size: int = 0
    #: Encoder lengths a window may be sized to (see ``encoder_frames``).
    encoder_buckets_s: tuple[float, ...] = DEFAULT_BUCKETS_S
    encoder_margin_s: float = DEFAULT_MARGIN_S


@dataclass
class _Attempt:
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    #: The last segment was closed by a timestamp (Whisper's "single timestamp ending").
    closed: bool
    #: Every hypothesis the beam returned, best first, with its score (the first is
    #: ``tokens``); only one unless alternatives were asked for.
    hypotheses: list[tuple[list[int], float]] = field(default_factory=list)

    @property
    def silent(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob < LOGPROB_FLOOR

    @property
    def acceptable(self) -> bool:
        if self.silent:
            return True
        return (
            self.compression_ratio <= COMPRESSION_RATIO_LIMIT and self.avg_logprob >= LOGPROB_FLOOR
        )

    @property
    def trusted_when_sized(self) -> bool:
        """Whether a decode of a shortened encoder input may stand (see the module doc)."""
        return self.silent or (self.closed and self.acceptable)


class WhisperEngine:
    """Owns one CTranslate2 Whisper replica; used from a single thread (its batcher instance)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._model = WhisperModel(
            str(config.model_path),
            device=config.device,
            device_index=config.device_index,
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
            num_workers=1,
        )
        self._whisper: ctranslate2.models.Whisper = self._model.model
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        english = self._tokenizer("en")
        self._sot = english.sot
        self._suppress = list(get_suppressed_tokens(english, [-1]) or ())
        #: Counters for tests and measurements: batch items decoded, windows encoded at
        #: each encoder length (frames), and sized decodes redone at the full 30 s.
        self.items_decoded = 0
        self.encoded_frames: Counter[int] = Counter()
        self.redone_at_full_length = 0

    # ------------------------------------------------------------------ facts

    @property
    def multilingual(self) -> bool:
        return bool(self._whisper.is_multilingual)

    @property
    def languages(self) -> list[str]:
        return list(self._model.supported_languages)

    @property
    def device(self) -> str:
        return str(self._whisper.device)

    @property
    def compute_type(self) -> str:
        return str(self._whisper.compute_type)

    def frames_for(self, num_samples: int) -> int:
        """The encoder length a window of ``num_samples`` is decoded at first."""
        return encoder_frames(
            num_samples, self.config.encoder_buckets_s, self.config.encoder_margin_s
        )

    # ------------------------------------------------------------------ batch

    def run_batch(self, items: Sequence[WindowItem]) -> list[WindowResult | Exception]:
        """Decodes every window; a bad item gets its own exception, the others their result.

        Windows of one encoder length decode together; a sized decode in doubt is decoded
        again at the full length, alone with the other doubtful ones.
        """
        outcomes: list[WindowResult | Exception | None] = [None] * len(items)
        groups: dict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            problem = self._check(item)
            if problem is None:
                groups[self.frames_for(len(item.samples))].append(index)
            else:
                outcomes[index] = problem
        redo: list[int] = []
        for frames, members in sorted(groups.items()):
            self.items_decoded += len(members)
            decoded = self._decode_group([items[i] for i in members], frames)
            for index, result in zip(members, decoded, strict=True):
                if result is None:
                    redo.append(index)
                else:
                    outcomes[index] = result
        if redo:
            self.redone_at_full_length += len(redo)
            log.debug("sized decodes in doubt, decoded again at 30 s", extra={"count": len(redo)})
            again = self._decode_group([items[i] for i in redo], WINDOW_FRAMES)
            for index, result in zip(redo, again, strict=True):
                outcomes[index] = result
        return [o if o is not None else RuntimeError("window was not decoded") for o in outcomes]

    def _check(self, item: WindowItem) -> Exception | None:
        if item.should_decode is not None and not item.should_decode():
            return RequestCancelled("withdrawn by its caller before decoding")
        if item.samples.ndim != 1 or not 0 < len(item.samples) <= WINDOW_SAMPLES:
            return InvalidArgument(
                f"a window must hold 1..{WINDOW_SAMPLES} mono samples, got {item.samples.shape}"
            )
        language = item.options.language
        if language is None:
            return None
        if language not in self.languages:
            return InvalidArgument(f"language {language!r} is not supported by this model")
        return None

    def _decode_group(self, items: list[WindowItem], frames: int) -> list[WindowResult | None]:
        """Decodes windows at one encoder length; None for a sized decode in doubt."""
        final = frames >= WINDOW_FRAMES
        self.encoded_frames[frames] += len(items)
        features = np.stack([self._features(item.samples, frames) for item in items])
        encoded = _EncodedBatch(self, features)
        languages = self._languages(items, encoded)
        prompts = [
            self._prompt(item.options, language)
            for item, (language, _) in zip(items, languages, strict=True)
        ]
        attempts = self._decode_with_fallback(items, prompts, encoded, frames)
        kept = [p for p, a in enumerate(attempts) if final or a.trusted_when_sized]
        token_segments: dict[int, list[TimedTokens]] = {}
        resume: dict[int, float | None] = {}
        for position in kept:
            attempt = attempts[position]
            duration = len(items[position].samples) / SAMPLE_RATE
            tokenizer = self._tokenizer(languages[position][0], items[position].options.task)
            tokens, resume_at = (attempt.tokens, None)
            if not attempt.silent:
                tokens, resume_at = seek_rule(
                    attempt.tokens, tokenizer.timestamp_begin, duration
                )
            resume[position] = resume_at
            token_segments[position] = (
                split_segments(
                    tokens,
                    eot=tokenizer.eot,
                    timestamp_begin=tokenizer.timestamp_begin,
                    window_duration=duration,
                )
                if not attempt.silent
                else []
            )
        aligned = [p for p in kept if token_segments[p] and items[p].options.word_timestamps]
        words = self._align_words(items, aligned, languages, token_segments, encoded)
        results: list[WindowResult | None] = [None] * len(items)
        for position in kept:
            language, probability = languages[position]
            tokenizer = self._tokenizer(language, items[position].options.task)
            attempt = attempts[position]
            segment_words = _words_per_segment(token_segments[position], words.get(position, []))
            segments = tuple(
                DecodedSegment(
                    # With word times at hand, the segment spans its words: the alignment
                    # is closer to the audio than Whisper's timestamp tokens.
                    start=segment_words[k][0].start if segment_words[k] else segment.start,
                    end=segment_words[k][-1].end if segment_words[k] else segment.end,
                    text=tokenizer.decode(list(segment.tokens)),
                    avg_logprob=attempt.avg_logprob,
                    no_speech_prob=attempt.no_speech_prob,
                    words=tuple(segment_words[k]),
                )
                for k, segment in enumerate(token_segments[position])
            )
            results[position] = WindowResult(
                segments,
                language,
                probability,
                resume[position],
                frames,
                self._alternatives(
                    items[position], attempt, segments, language, resume[position]
                ),
            )
        return results

    def _alternatives(
        self,
        item: WindowItem,
        attempt: _Attempt,
        segments: tuple[DecodedSegment, ...],
        language: str,
        resume_at: float | None,
    ) -> tuple[Alternative, ...]:
        """The window's N-best when asked for (see stt_service/alternatives.py)."""
        limit = item.options.alternatives
        if limit <= 0 or attempt.silent:
            return ()
        tokenizer = self._tokenizer(language, item.options.task)
        duration = len(item.samples) / SAMPLE_RATE

        def text_of(tokens: list[int]) -> str:
            parts = split_segments(
                tokens,
                eot=tokenizer.eot,
                timestamp_begin=tokenizer.timestamp_begin,
                window_duration=duration,
            )
            return join_texts([tokenizer.decode(list(p.tokens)) for p in parts], language)

        return window_alternatives(
            join_texts([segment.text for segment in segments], language),
            attempt.hypotheses,
            text_of=text_of,
            timestamp_begin=tokenizer.timestamp_begin,
            resume_at=resume_at,
            limit=limit,
        )

    # ------------------------------------------------------------------ steps

    def _features(self, samples: np.ndarray, frames: int) -> np.ndarray:
        padded = np.zeros(frames * WINDOW_SAMPLES // WINDOW_FRAMES, dtype=np.float32)
        padded[: len(samples)] = samples[: len(padded)]
        mel = self._model.feature_extractor(padded, padding=0)
        if mel.shape[-1] < frames:
            mel = np.pad(mel, ((0, 0), (0, frames - mel.shape[-1])))
        return np.ascontiguousarray(mel[:, :frames], dtype=np.float32)

    def _languages(
        self, items: list[WindowItem], encoded: _EncodedBatch
    ) -> list[tuple[str, float]]:
        """(language, probability) per window: as asked, or detected from the encoder output."""
        chosen: list[tuple[str, float]] = [(item.options.language or "en", 1.0) for item in items]
        if not self.multilingual:
            return [("en", 1.0) for _ in items]
        undecided = [i for i, item in enumerate(items) if item.options.language is None]
        if undecided:
            detections = self._whisper.detect_language(encoded.take(undecided))
            for position, ranked in zip(undecided, detections, strict=True):
                token, probability = ranked[0]
                chosen[position] = (token.strip("<|>"), float(probability))
        return chosen

    def _tokenizer(self, language: str, task: str = "transcribe") -> Tokenizer:
        """Whisper's tokenizer for a language and task; its start-of-transcript sequence
        carries both (an English-only model has neither)."""
        key = (language, task if self.multilingual else "transcribe")
        tokenizer = self._tokenizers.get(key)
        if tokenizer is None:
            tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self.multilingual,
                task=key[1],
                language=language if self.multilingual else None,
            )
            self._tokenizers[key] = tokenizer
        return tokenizer

    def _prompt(self, options: DecodeOptions, language: str) -> list[int]:
        """<|startofprev|> hotwords and initial prompt, then the start-of-transcript sequence."""
        tokenizer = self._tokenizer(language, options.task)
        previous: list[int] = []
        if options.hotwords:
            previous += tokenizer.encode(" " + " ".join(options.hotwords))
        if options.initial_prompt:
            previous += tokenizer.encode(" " + options.initial_prompt)
        prompt = [tokenizer.sot_prev, *previous[-MAX_PROMPT_TOKENS:]] if previous else []
        return prompt + list(tokenizer.sot_sequence)

    def _decode_with_fallback(
        self,
        items: list[WindowItem],
        prompts: list[list[int]],
        encoded: _EncodedBatch,
        frames: int,
    ) -> list[_Attempt]:
        """Beam search; at full length, once more with the deterministic fallback for the
        windows whose text is not acceptable (a sized decode in doubt is redone at 30 s
        instead)."""
        everyone = list(range(len(items)))
        tried: dict[int, list[_Attempt]] = defaultdict(list)
        for position, attempt in self._generate(
            everyone, prompts, encoded, frames, lambda p: _beam_settings(items[p].options)
        ).items():
            tried[position].append(attempt)
        retry = [p for p in everyone if not tried[p][-1].acceptable]
        if retry and frames >= WINDOW_FRAMES:
            again = self._generate(
                retry,
                prompts,
                encoded,
                frames,
                lambda p: {**_beam_settings(items[p].options), **FALLBACK_SETTINGS},
            )
            for position, attempt in again.items():
                tried[position].append(attempt)
        return [_final_choice(tried[p]) for p in everyone]

    def _generate(
        self,
        positions: list[int],
        prompts: list[list[int]],
        encoded: _EncodedBatch,
        frames: int,
        settings_for: Callable[[int], dict[str, Any]],
    ) -> dict[int, _Attempt]:
        """Runs generate once per group of windows that CTranslate2 can decode together
        (the same start-of-transcript position and settings)."""
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for position in positions:
            settings = settings_for(position)
            sot_at = prompts[position].index(self._sot)
            groups[(sot_at, *sorted(settings.items()))].append(position)
        english = self._tokenizer("en")
        out: dict[int, _Attempt] = {}
        for members in groups.values():
            settings = settings_for(members[0])
            prompt_length = max(len(prompts[p]) for p in members)
            results = self._whisper.generate(
                encoded.take(members),
                [prompts[p] for p in members],
                max_length=max_length(frames, prompt_length),
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress,
                **settings,
            )
            for position, result in zip(members, results, strict=True):
                attempt = _attempt(
                    result.sequences_ids[0],
                    result.scores[0],
                    result.no_speech_prob,
                    english,
                )
                attempt.hypotheses = [
                    (list(ids), float(score))
                    for ids, score in zip(result.sequences_ids, result.scores, strict=True)
                ]
                out[position] = attempt
        return out

    def _align_words(
        self,
        items: list[WindowItem],
        positions: list[int],
        languages: list[tuple[str, float]],
        token_segments: dict[int, list[TimedTokens]],
        encoded: _EncodedBatch,
    ) -> dict[int, list[TimedWord]]:
        """Word timings of the windows at ``positions``; one align call per language and
        task."""
        by_language: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position in positions:
            by_language[(languages[position][0], items[position].options.task)].append(position)
        words: dict[int, list[TimedWord]] = {}
        for (language, task), members in by_language.items():
            tokenizer = self._tokenizer(language, task)
            texts = [[t for s in token_segments[p] for t in s.tokens] for p in members]
            frames = [
                min(
                    WINDOW_FRAMES,
                    math.ceil(len(items[p].samples) * MEL_FRAMES_PER_SECOND / SAMPLE_RATE),
                )
                for p in members
            ]
            alignments = self._whisper.align(
                encoded.take(members),
                list(tokenizer.sot_sequence),
                texts,
                frames,
                median_filter_width=7,
            )
            for position, text, alignment in zip(members, texts, alignments, strict=True):
                words[position] = words_from_alignment(
                    tokenizer,
                    text,
                    alignment,
                    window_duration=len(items[position].samples) / SAMPLE_RATE,
                    language=language,
                )
        return words

    @property
    def encoder_batch_size(self) -> int:
        """Windows per encoder call (0: all at once)."""
        if self.device != "cpu":
            return 0  # a GPU encodes a batch at once; pieces would also need host copies
        return self.config.encoder_batch_size or 1

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        return self._model.encode(features)


class _EncodedBatch:
    """The encoder output of a batch, and sub-batches of it for grouped decoder calls."""

    def __init__(self, engine: WhisperEngine, features: np.ndarray) -> None:
        self._engine = engine
        self._features = features
        self._size = features.shape[0]
        self._host: np.ndarray | None = None
        #: Arrays backing StorageViews must outlive the calls that read them.
        self._keep: list[Any] = []
        step = engine.encoder_batch_size or self._size
        if step >= self._size:
            self._output = engine.encode(features)
        else:  # CPU only: encode in pieces, then one host array for the batched decoder
            pieces = [
                np.asarray(engine.encode(features[i : i + step]))
                for i in range(0, self._size, step)
            ]
            self._host = np.ascontiguousarray(np.concatenate(pieces))
            self._output = ctranslate2.StorageView.from_array(self._host)

    def take(self, positions: Sequence[int]) -> ctranslate2.StorageView:
        if list(positions) == list(range(self._size)):
            return self._output
        if self._output.device == "cpu":
            if self._host is None:
                self._host = np.asarray(self._output)
            part = np.ascontiguousarray(self._host[list(positions)])
            self._keep.append(part)
            return ctranslate2.StorageView.from_array(part)
        return self._take_on_gpu(positions)

    def _take_on_gpu(self, positions: Sequence[int]) -> ctranslate2.StorageView:
        """Slices on the GPU with torch when present; else re-encodes the sub-batch."""
        try:
            import torch
        except ImportError:
            return self._engine.encode(self._features[list(positions)])
        tensor = torch.as_tensor(self._output, device="cuda")
        part = tensor[torch.as_tensor(list(positions), device="cuda")].contiguous()
        self._keep.append(part)
        return ctranslate2.StorageView.from_array(part)


def _beam_settings(options: DecodeOptions) -> dict[str, Any]:
    """generate's search settings for a window. The beam's hypotheses are asked for only
    when alternatives are wanted (CTranslate2 returns the same best hypothesis either way),
    so windows without them keep decoding together exactly as before. All of the beam's
    are asked for, not just the number wanted: hypotheses often differ only in their
    timestamps, and those read the same (stt_service/alternatives.py merges them)."""
    settings: dict[str, Any] = {"beam_size": options.beam_size}
    if options.alternatives > 1:
        settings["num_hypotheses"] = options.beam_size
    return settings


def max_length(frames: int, prompt_length: int) -> int:
    """The decoder's length limit (prompt included) for an encoder input of ``frames``.

    >>> max_length(3000, 3), max_length(1000, 3)
    (448, 169)
    """
    if frames >= WINDOW_FRAMES:
        return MAX_LENGTH
    budget = math.ceil(frames / MEL_FRAMES_PER_SECOND * TOKENS_PER_SECOND) + 16
    return min(MAX_LENGTH, prompt_length + budget)


def seek_rule(
    tokens: list[int], timestamp_begin: int, duration_s: float
) -> tuple[list[int], float | None]:
    """Whisper's rule for where a decode ends: (the tokens to keep, where to resume).

    Output that ends on a closed segment (text, then one timestamp) covers the whole window.
    Output that ends otherwise, after at least one closed segment (two timestamps in a row
    mark a boundary), is kept up to the last boundary, and the window resumes at that
    boundary's time. Output with no boundary at all is one segment and covers the window.

    >>> tb = 100  # timestamp tokens are >= 100 here; 0.02 s per step
    >>> seek_rule([100, 1, 2, 150], tb, 5.0)
    ([100, 1, 2, 150], None)
    >>> seek_rule([100, 1, 150, 150, 3, 4], tb, 5.0)
    ([100, 1, 150], 1.0)
    >>> seek_rule([100, 1, 2], tb, 5.0)
    ([100, 1, 2], None)
    """
    if len(tokens) >= 2 and tokens[-1] >= timestamp_begin > tokens[-2]:
        return tokens, None
    boundaries = [
        i
        for i in range(1, len(tokens))
        if tokens[i] >= timestamp_begin and tokens[i - 1] >= timestamp_begin
    ]
    if not boundaries:
        return tokens, None
    last = boundaries[-1]
    resume_at = round((tokens[last - 1] - timestamp_begin) * TIME_PRECISION, 3)
    if resume_at < MIN_RESUME_S or duration_s - resume_at < MIN_RESUME_S:
        return tokens, None
    return tokens[:last], resume_at


def _attempt(ids: list[int], score: float, no_speech_prob: float, tokenizer: Tokenizer) -> _Attempt:
    # CTranslate2 scores are length-normalised (length_penalty=1): undo that, then average
    # over the tokens plus the end-of-text token, as Whisper's thresholds assume.
    cumulative = score * len(ids)
    ratio = compression_ratio(tokenizer.decode([t for t in ids if t < tokenizer.eot]).strip())
    closed = len(ids) >= 2 and ids[-1] >= tokenizer.timestamp_begin > ids[-2]
    return _Attempt(list(ids), cumulative / (len(ids) + 1), float(no_speech_prob), ratio, closed)


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: how well the text compresses (a loop compresses well;
    above ``COMPRESSION_RATIO_LIMIT`` it counts as one).

    >>> compression_ratio("Go forward ten meters. " * 6) > COMPRESSION_RATIO_LIMIT
    True
    >>> compression_ratio("Go forward ten meters.") > COMPRESSION_RATIO_LIMIT
    False
    """
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _final_choice(attempts: list[_Attempt]) -> _Attempt:
    """The accepted attempt, else the most likely one that is not a repetition loop."""
    if attempts[-1].acceptable:
        return attempts[-1]
    not_looping = [a for a in attempts if a.compression_ratio <= COMPRESSION_RATIO_LIMIT]
    return max(not_looping or attempts, key=lambda a: a.avg_logprob)


def _words_per_segment(
    segments: list[TimedTokens], words: list[TimedWord]
) -> list[list[DecodedWord]]:
    """Gives each timed word to the segment that holds its first token."""
    grouped: list[list[DecodedWord]] = [[] for _ in segments]
    bounds = np.cumsum([len(s.tokens) for s in segments])
    for word in words:
        index = int(np.searchsorted(bounds, word.first_token, side="right"))
        if index < len(segments):
            grouped[index].append(
                DecodedWord(word.word.strip(), word.start, word.end, word.probability)
            )
    return grouped
