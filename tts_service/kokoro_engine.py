"""Kokoro-82M (int8 ONNX) through onnxruntime: the HIGH tier.

English phonemes come from espeak-ng (espeakng-loader, through kokoro-onnx's tokenizer), the
one G2P path this project uses. The graph takes one sequence per call (batch 1), so the
engine scales by instances, not by batching. Per call: tokens wrapped as ``[0, ..., 0]``,
the voice's style row ``n_tokens - 1`` (the reference implementation's choice: one row per
phoneme count), ``speed`` = speaking rate; out comes 24 kHz audio.

The model pads each call with about half a second of silence at both ends; joined sentence by
sentence that would be a second of dead air, so each piece is trimmed to its speech plus a
short natural margin. The graph's frames per token (exposed as a second output by
tools/assets) give each word's time; the trim's offset is taken off them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from batcher import BatchFunction
from speech_platform.config import TtsSettings
from speech_platform.errors import InvalidArgument
from speech_platform.fingerprint import versions_of
from tts_service.assets import kokoro_assets
from tts_service.engine import (
    Engine,
    PreparedItem,
    RenderedSentence,
    engine_failure,
    run_options,
    session_options,
)
from tts_service.timings import SpokenWord, spoken_words, word_groups
from tts_service.voices import KOKORO, Voice, kokoro_voice

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
#: Tokens per call: the model's 512 positions less the two wrapping zeros.
MAX_TOKENS = 510
#: Silence kept before and after the speech of each trimmed piece.
LEAD_MARGIN_S = 0.05
TAIL_MARGIN_S = 0.15
#: Frames quieter than this, relative to the loudest frame, count as silence.
SILENCE_DB = -40.0
_FRAME = 480  # 20 ms at 24 kHz
#: Blended style tables kept (each 510 x 256 floats, 0.5 MB), oldest dropped first.
MAX_KEPT_BLENDS = 32


#: Audio samples per duration frame of the graph (its hop at 24 kHz).
SAMPLES_PER_FRAME = 600


@dataclass(frozen=True)
class KokoroPayload:
    #: Token sequences, each one ONNX call (a sentence over MAX_TOKENS is cut at word gaps).
    token_runs: tuple[tuple[int, ...], ...]
    #: Per run, each phoneme word as (first, end, phonemes) positions in the wrapped tokens.
    word_spans: tuple[tuple[tuple[int, int, str], ...], ...] = ()


def trim_silence(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The speech in ``audio`` with short margins, judged by 20 ms frame energy."""
    start, end = speech_bounds(audio, sample_rate)
    return audio[start:end]


def speech_bounds(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """[start, end) of the speech in ``audio`` with short margins (what trimming keeps)."""
    frames = audio.size // _FRAME
    if frames == 0:
        return (0, audio.size)
    energy = np.sqrt(np.mean(audio[: frames * _FRAME].reshape(frames, _FRAME) ** 2, axis=1))
    loudest = float(energy.max())
    if loudest <= 0:
        return (0, 0)
    voiced = np.flatnonzero(energy >= loudest * 10 ** (SILENCE_DB / 20))
    start = max(0, voiced[0] * _FRAME - int(LEAD_MARGIN_S * sample_rate))
    end = min(audio.size, (voiced[-1] + 1) * _FRAME + int(TAIL_MARGIN_S * sample_rate))
    return (int(start), int(end))


def split_tokens(phonemes: str, vocab: dict[str, int]) -> list[tuple[int, ...]]:
    """Token runs of at most MAX_TOKENS, cut at spaces where one is long enough to need it."""
    tokens = [vocab[p] for p in phonemes if p in vocab]
    if len(tokens) <= MAX_TOKENS:
        return [tuple(tokens)] if tokens else []
    space = vocab.get(" ")
    runs: list[tuple[int, ...]] = []
    while len(tokens) > MAX_TOKENS:
        window = tokens[:MAX_TOKENS]
        cut = max((i for i, t in enumerate(window) if t == space), default=0) or MAX_TOKENS
        runs.append(tuple(tokens[:cut]))
        tokens = tokens[cut:]
        while tokens and tokens[0] == space:
            tokens = tokens[1:]
    if tokens:
        runs.append(tuple(tokens))
    return runs


class KokoroEngine(Engine[PreparedItem]):
    name = KOKORO
    sample_rate = SAMPLE_RATE

    def __init__(self, settings: TtsSettings, model_dir: Path) -> None:
        super().__init__(settings.kokoro_batcher, settings.kokoro_instances)
        self._model_dir = model_dir
        self._threads = settings.kokoro_threads
        self.threads_per_instance = settings.kokoro_threads
        self.on_cpu = settings.kokoro_device == "cpu"
        self.device = settings.kokoro_device
        self._providers = onnx_providers(settings.kokoro_device)
        self.runtime = f"{versions_of('kokoro-onnx', 'onnxruntime')}; {','.join(self._providers)}"
        self._model_path: Path | None = None
        self._styles: dict[str, np.ndarray] = {}
        self._voices: list[Voice] = []
        self._tokenizer: object | None = None
        self._vocab: dict[str, int] = {}
        self._phonemes: dict[int, str] = {}
        self._blends: dict[str, np.ndarray] = {}
        self._blends_lock = threading.Lock()
        self.model_version = ""

    def load(self) -> None:
        # Imported here: it loads libespeak-ng, which only this engine needs.
        from kokoro_onnx.config import DEFAULT_VOCAB
        from kokoro_onnx.tokenizer import Tokenizer

        assets = kokoro_assets(self._model_dir)
        with np.load(assets.voices_path) as archive:
            styles = {name: np.asarray(archive[name], dtype=np.float32) for name in archive.files}
        voices = [v for v in (kokoro_voice(name, SAMPLE_RATE) for name in styles) if v]
        self._tokenizer = Tokenizer(vocab=DEFAULT_VOCAB)
        self._vocab = dict(DEFAULT_VOCAB)
        self._phonemes = {token: phoneme for phoneme, token in self._vocab.items()}
        self._styles = {v.name: styles[v.name] for v in voices}
        self._voices = voices
        self._model_path = assets.model_path
        # Weights and voices together: new voice tables must not hit old cache entries.
        self.model_version = f"{assets.model_sha256}+voices:{assets.voices_sha256}"

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def prepare(self, sentence: str, voice: Voice, speaking_rate: float) -> PreparedItem:
        tokenizer = self._tokenizer
        if tokenizer is None:
            raise RuntimeError("KokoroEngine.load() first")
        phonemes: str = tokenizer.phonemize(sentence, voice.phonemizer_language)  # type: ignore[attr-defined]
        runs = split_tokens(" ".join(phonemes.split()), self._vocab)
        if not runs or not any(ch.isalpha() for ch in phonemes):
            raise InvalidArgument(f"nothing to say in {sentence[:60]!r} for voice {voice.name}")
        cost = sum(len(run) for run in runs)
        spans = tuple(self._word_spans(run) for run in runs)
        return PreparedItem(
            sentence, voice, speaking_rate, cost, KokoroPayload(tuple(runs), spans)
        )

    def _word_spans(self, run: tuple[int, ...]) -> tuple[tuple[int, int, str], ...]:
        units = [self._phonemes.get(token, "") for token in run]
        return tuple((a + 1, b + 1, "".join(units[a:b])) for a, b in word_groups(units))

    def style_table(self, voice: Voice) -> np.ndarray:
        """The voice's style table; a blend's is its voices' tables mixed by weight (kept)."""
        if not voice.blend:
            return self._styles[voice.name]
        with self._blends_lock:
            table = self._blends.get(voice.name)
            if table is None:
                table = np.zeros_like(self._styles[voice.blend[0][0]])
                for name, weight in voice.blend:
                    table += self._styles[name] * np.float32(weight)
                if len(self._blends) >= MAX_KEPT_BLENDS:
                    self._blends.pop(next(iter(self._blends)))
                self._blends[voice.name] = table
            return table

    # ------------------------------------------------------------------ instances

    def build_instance(self, index: int) -> BatchFunction[PreparedItem, RenderedSentence]:
        assert self._model_path is not None
        session = ort.InferenceSession(
            str(self._model_path),
            session_options(self._threads),
            providers=self._providers,
        )
        style_of = self.style_table

        timed = len(session.get_outputs()) > 1  # assets built with the duration output
        frame_s = SAMPLES_PER_FRAME / SAMPLE_RATE

        def render(item: PreparedItem) -> RenderedSentence | BaseException:
            style = style_of(item.voice)
            pieces = []
            words: list[SpokenWord] = []
            spoken_s = 0.0
            payload: KokoroPayload = item.payload
            try:
                for run, tokens in enumerate(payload.token_runs):
                    row = style[min(len(tokens), len(style)) - 1]
                    outputs = session.run(
                        None,
                        {
                            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                            "style": np.asarray(row, dtype=np.float32).reshape(1, -1),
                            "speed": np.array([item.speaking_rate], dtype=np.float32),
                        },
                        run_options([item]),
                    )
                    audio = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
                    start, end = speech_bounds(audio)
                    if timed and run < len(payload.word_spans):
                        offset_s = spoken_s - start / SAMPLE_RATE
                        spans = payload.word_spans[run]
                        limit_s = spoken_s + (end - start) / SAMPLE_RATE
                        words += spoken_words(outputs[1], spans, frame_s, offset_s, limit_s)
                    pieces.append(audio[start:end])
                    spoken_s += (end - start) / SAMPLE_RATE
            except Exception as error:
                return engine_failure(KOKORO, error)
            audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
            return RenderedSentence(audio, tuple(words))

        def run_batch(items: list[PreparedItem]) -> Sequence[RenderedSentence | BaseException]:
            return [render(item) for item in items]  # the graph takes batch 1

        return run_batch


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers for a device; "cuda" needs the onnxruntime-gpu build (gpu image)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise RuntimeError(
            f"tts.kokoro_device={device!r} but onnxruntime offers only {available}: "
            "install onnxruntime-gpu (docker/Dockerfile.gpu) or set SPEECH_TTS__KOKORO_DEVICE=cpu"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]
