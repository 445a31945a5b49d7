"""One Whisper model instance, decoding a batch of 30 s windows from many requests at once.

A batch runs as: log-mel features of every window (each padded with silence to 30 s,
never shortened: Whisper degrades on shorter inputs), ONE encoder pass over all of them,
language detection on that encoder output for the windows that need it, then decoding in
as few ``generate`` calls as CTranslate2 allows. It requires every prompt of a call to put
<|startoftranscript|> at the same position, so windows are grouped by beam size and by the
length of their previous-text prompt (hotwords, initial prompt); most batches are one call.

Decoding follows Whisper's published recipe: beam search at temperature 0, and for a
window whose text is too repetitive (gzip ratio > 2.4) or too unlikely (mean log-prob
< -1), sampling at rising temperatures, batched across the windows that need it. A window
the model deems silent (no-speech probability > 0.6 with a low log-prob) yields no text.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from batcher import RequestCancelled
from speech_platform.errors import InvalidArgument
from stt_service.options import DecodeOptions
from stt_service.packing import Bin, PackingPolicy, lay_out, plan_bins, split_segments_by_item
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
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
BEST_OF = 5
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_FLOOR = -1.0
NO_SPEECH_THRESHOLD = 0.6
#: Text whose last timestamp leaves this much of the window may have stopped early.
EARLY_STOP_S = 1.0


@dataclass(frozen=True)
class WindowItem:
    """One batch item: at most 30 s of 16 kHz mono float32 audio and how to decode it."""

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
    #: Where the transcribed speech ends in the window, in seconds (None: no text). Taken
    #: from the word alignment when the text stops well before the window's end, because
    #: Whisper's own timestamps drift by seconds exactly when it stops too early.
    text_end: float | None = None


@dataclass(frozen=True)
class EngineConfig:
    model_path: Path
    device: str = "cpu"
    device_index: int = 0
    compute_type: str = "int8"
    cpu_threads: int = 1
    #: Windows per encoder call on a CPU (0 = 1): the encoder is compute bound there and a
    #: batched call measured 10-35 % more CPU time than the same windows one by one (the
    #: decoder still runs batched). A GPU always encodes the whole batch in one call.
    encoder_batch_size: int = 0
    #: Decode several short windows of a batch as one 30 s window (see packing).
    pack_short_windows: bool = False
    pack_max_item_seconds: float = 10.0
    pack_gap_seconds: float = 0.5


@dataclass
class _Attempt:
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float

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
        self._tokenizers: dict[str, Tokenizer] = {}
        english = self._tokenizer("en")
        self._sot = english.sot
        self._suppress = list(get_suppressed_tokens(english, [-1]) or ())
        #: Counters for tests and measurements: batch items decoded, windows that went
        #: through the encoder (fewer than items when packing), items decoded packed,
        #: items decoded again alone after packing, and packed segments that straddled items.
        self.items_decoded = 0
        self.windows_encoded = 0
        self.items_packed = 0
        self.items_redecoded = 0
        self.straddling_segments = 0

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

    # ------------------------------------------------------------------ batch

    def run_batch(self, items: Sequence[WindowItem]) -> list[WindowResult | Exception]:
        """Decodes every window; a bad item gets its own exception, the others their result."""
        outcomes: list[WindowResult | Exception | None] = [None] * len(items)
        valid: list[int] = []
        for index, item in enumerate(items):
            problem = self._check(item)
            if problem is None:
                valid.append(index)
            else:
                outcomes[index] = problem
        if valid:
            batch = [items[i] for i in valid]
            self.items_decoded += len(batch)
            decode = self._decode_packed if self.config.pack_short_windows else self._decode_batch
            for index, result in zip(valid, decode(batch), strict=True):
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

    def _decode_packed(self, items: list[WindowItem]) -> list[WindowResult]:
        """Like ``_decode_batch``, with short compatible items sharing windows (see packing).

        Packed windows and the items left alone share the same encoder and decoder calls.
        An item that got no text from its packed window (Whisper stopped early, or skipped
        it), or whose words a segment running across a gap makes suspect, is decoded again
        alone: packing must not lose or misplace speech. A silent item so costs two decodes.
        """
        policy = PackingPolicy(
            max_item_seconds=self.config.pack_max_item_seconds,
            gap_seconds=self.config.pack_gap_seconds,
        )
        bins = plan_bins(
            [len(item.samples) / SAMPLE_RATE for item in items],
            [self._pack_key(item.options) for item in items],
            policy,
        )
        if not bins:
            return self._decode_batch(items)
        packed = {p.index for b in bins for p in b.placements}
        alone = [i for i in range(len(items)) if i not in packed]
        windows = [items[i] for i in alone] + [
            WindowItem(
                lay_out([item.samples for item in items], b),
                # Always aligned: word times decide which item each word belongs to.
                replace(items[b.placements[0].index].options, word_timestamps=True),
            )
            for b in bins
        ]
        decoded = self._decode_batch(windows)
        results: list[WindowResult | None] = [None] * len(items)
        for index, result in zip(alone, decoded, strict=False):
            results[index] = result
        doubtful: list[int] = []
        for b, window in zip(bins, decoded[len(alone) :], strict=True):
            self.items_packed += len(b.placements)
            for index, split in self._split(items, b, window):
                if split is None:
                    doubtful.append(index)
                else:
                    results[index] = split
        if doubtful:
            self.items_redecoded += len(doubtful)
            log.debug("packed items decoded again alone", extra={"count": len(doubtful)})
            again = self._decode_batch([items[i] for i in doubtful])
            for index, result in zip(doubtful, again, strict=True):
                results[index] = result
        return [r for r in results if r is not None]

    def _pack_key(self, options: DecodeOptions) -> tuple[Any, ...] | None:
        """What packed items must share; None: not packable (language still to detect)."""
        language = options.language if self.multilingual else "en"
        if language is None:
            return None
        return (language, options.beam_size, options.initial_prompt, options.hotwords)

    def _split(
        self, items: list[WindowItem], packed: Bin, window: WindowResult
    ) -> list[tuple[int, WindowResult | None]]:
        """Each packed item's result; None where it must be decoded alone (see above)."""
        report = split_segments_by_item(window.segments, packed, language=window.language)
        self.straddling_segments += report.straddling
        out: list[tuple[int, WindowResult | None]] = []
        for position, (placement, got) in enumerate(
            zip(packed.placements, report.per_item, strict=True)
        ):
            if not got.segments or position in report.straddled:
                out.append((placement.index, None))
                continue
            segments = got.segments
            if not items[placement.index].options.word_timestamps:
                segments = [replace(s, words=()) for s in segments]
            out.append(
                (
                    placement.index,
                    WindowResult(
                        tuple(segments),
                        window.language,
                        window.language_probability,
                        got.text_end,
                    ),
                )
            )
        return out

    def _decode_batch(self, items: list[WindowItem]) -> list[WindowResult]:
        self.windows_encoded += len(items)
        features = np.stack([self._features(item.samples) for item in items])
        encoded = _EncodedBatch(self, features)
        languages = self._languages(items, encoded)
        prompts = [
            self._prompt(item.options, language)
            for item, (language, _) in zip(items, languages, strict=True)
        ]
        attempts = self._decode_with_fallback(items, prompts, encoded)
        token_segments: list[list[TimedTokens]] = [
            split_segments(
                attempt.tokens,
                eot=self._tokenizer(language).eot,
                timestamp_begin=self._tokenizer(language).timestamp_begin,
                window_duration=len(item.samples) / SAMPLE_RATE,
            )
            if not attempt.silent
            else []
            for item, attempt, (language, _) in zip(items, attempts, languages, strict=True)
        ]
        # Word times for the windows that asked, and for those whose text stops early.
        aligned = [
            position
            for position, item in enumerate(items)
            if token_segments[position]
            and (
                item.options.word_timestamps
                or len(item.samples) / SAMPLE_RATE - token_segments[position][-1].end
                >= EARLY_STOP_S
            )
        ]
        words = self._align_words(items, aligned, languages, token_segments, encoded)
        results = []
        for position, (language, probability) in enumerate(languages):
            tokenizer = self._tokenizer(language)
            attempt = attempts[position]
            timed = words.get(position, [])
            text_end = _text_end(token_segments[position], timed)
            if not items[position].options.word_timestamps:
                timed = []
            segment_words = _words_per_segment(token_segments[position], timed)
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
            results.append(WindowResult(segments, language, probability, text_end))
        return results

    # ------------------------------------------------------------------ steps

    def _features(self, samples: np.ndarray) -> np.ndarray:
        padded = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        padded[: len(samples)] = samples
        mel = self._model.feature_extractor(padded, padding=0)
        if mel.shape[-1] < WINDOW_FRAMES:
            mel = np.pad(mel, ((0, 0), (0, WINDOW_FRAMES - mel.shape[-1])))
        return np.ascontiguousarray(mel[:, :WINDOW_FRAMES], dtype=np.float32)

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

    def _tokenizer(self, language: str) -> Tokenizer:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self.multilingual,
                task="transcribe",
                language=language if self.multilingual else None,
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _prompt(self, options: DecodeOptions, language: str) -> list[int]:
        """<|startofprev|> hotwords and initial prompt, then the start-of-transcript sequence."""
        tokenizer = self._tokenizer(language)
        previous: list[int] = []
        if options.hotwords:
            previous += tokenizer.encode(" " + " ".join(options.hotwords))
        if options.initial_prompt:
            previous += tokenizer.encode(" " + options.initial_prompt)
        prompt = [tokenizer.sot_prev, *previous[-MAX_PROMPT_TOKENS:]] if previous else []
        return prompt + list(tokenizer.sot_sequence)

    def _decode_with_fallback(
        self, items: list[WindowItem], prompts: list[list[int]], encoded: _EncodedBatch
    ) -> list[_Attempt]:
        everyone = list(range(len(items)))
        tried: dict[int, list[_Attempt]] = defaultdict(list)
        for position, hypotheses in self._generate(
            everyone, prompts, encoded, lambda p: {"beam_size": items[p].options.beam_size}
        ).items():
            tried[position].append(_best(hypotheses))
        retry = [p for p in everyone if not tried[p][-1].acceptable]
        for temperature in TEMPERATURES[1:]:
            if not retry:
                break
            sampled = self._generate(retry, prompts, encoded, _sampling(temperature))
            for position, hypotheses in sampled.items():
                tried[position].append(_best(hypotheses))
            retry = [p for p in retry if not tried[p][-1].acceptable]
        if retry:
            log.debug("windows kept their best decode after fallback", extra={"count": len(retry)})
        return [_final_choice(tried[p]) for p in everyone]

    def _generate(
        self,
        positions: list[int],
        prompts: list[list[int]],
        encoded: _EncodedBatch,
        settings_for: Callable[[int], dict[str, Any]],
    ) -> dict[int, list[_Attempt]]:
        """Runs generate once per group of windows that CTranslate2 can decode together."""
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for position in positions:
            settings = settings_for(position)
            sot_at = prompts[position].index(self._sot)
            groups[(sot_at, *sorted(settings.items()))].append(position)
        out: dict[int, list[_Attempt]] = {}
        for members in groups.values():
            settings = settings_for(members[0])
            results = self._whisper.generate(
                encoded.take(members),
                [prompts[p] for p in members],
                max_length=MAX_LENGTH,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=self._suppress,
                **settings,
            )
            for position, result in zip(members, results, strict=True):
                out[position] = [
                    _attempt(ids, score, result.no_speech_prob, self._tokenizer("en"))
                    for ids, score in zip(result.sequences_ids, result.scores, strict=True)
                ]
        return out

    def _align_words(
        self,
        items: list[WindowItem],
        positions: list[int],
        languages: list[tuple[str, float]],
        token_segments: list[list[TimedTokens]],
        encoded: _EncodedBatch,
    ) -> dict[int, list[TimedWord]]:
        """Word timings of the windows at ``positions``; one align call per language."""
        by_language: dict[str, list[int]] = defaultdict(list)
        for position in positions:
            by_language[languages[position][0]].append(position)
        words: dict[int, list[TimedWord]] = {}
        for language, members in by_language.items():
            tokenizer = self._tokenizer(language)
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


def _sampling(temperature: float) -> Callable[[int], dict[str, Any]]:
    settings = {
        "beam_size": 1,
        "num_hypotheses": BEST_OF,
        "sampling_topk": 0,
        "sampling_temperature": temperature,
    }
    return lambda _position: settings


def _attempt(ids: list[int], score: float, no_speech_prob: float, tokenizer: Tokenizer) -> _Attempt:
    # CTranslate2 scores are length-normalised (length_penalty=1): undo that, then average
    # over the tokens plus the end-of-text token, as Whisper's thresholds assume.
    cumulative = score * len(ids)
    text = tokenizer.decode(ids).strip()
    raw = text.encode("utf-8")
    ratio = len(raw) / len(zlib.compress(raw)) if raw else 0.0
    return _Attempt(list(ids), cumulative / (len(ids) + 1), float(no_speech_prob), ratio)


def _best(hypotheses: list[_Attempt]) -> _Attempt:
    return max(hypotheses, key=lambda a: a.avg_logprob)


def _final_choice(attempts: list[_Attempt]) -> _Attempt:
    """The accepted attempt, else the most likely one that is not a repetition loop."""
    if attempts[-1].acceptable:
        return attempts[-1]
    not_looping = [a for a in attempts if a.compression_ratio <= COMPRESSION_RATIO_LIMIT]
    return max(not_looping or attempts, key=lambda a: a.avg_logprob)


def _text_end(segments: list[TimedTokens], words: list[TimedWord]) -> float | None:
    if not segments:
        return None
    return words[-1].end if words else segments[-1].end


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
