"""Piper (VITS) through onnxruntime: the cheap STANDARD tier.

Phonemes come from piper-tts's own espeak-ng bridge, ids from the voice's map, exactly as
``PiperVoice.synthesize`` would make them. The graph is the one ``tts_service.assets`` saved
with its ``Ceil`` tensor (frames per phoneme id) as a second output, so a padded batch can be
cut at each item's exact length, ``sum(ceil(durations)) * hop``: the padded tail is low
noise, not silence, so no threshold could find the end reliably.

Whether a batch runs as one padded ONNX call or item by item is configuration
(``tts.piper_padded_batching``): on a small CPU one call per item on several single-threaded
instances wins (measured), on wider hardware padding may pay. Either way every item is peak-
normalised like ``synthesize()`` does, so both paths sound equally loud.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from piper.config import PiperConfig
from piper.phoneme_ids import phonemes_to_ids
from piper.phonemize_espeak import EspeakPhonemizer

from batcher import BatchFunction
from speech_platform.config import TtsSettings
from speech_platform.errors import InvalidArgument
from speech_platform.fingerprint import versions_of
from tts_service.assets import PIPER_VOICE, piper_assets
from tts_service.engine import (
    Engine,
    PreparedItem,
    RenderedSentence,
    engine_failure,
    peak_normalize,
    run_options,
    session_options,
)
from tts_service.timings import spoken_words, word_groups
from tts_service.voices import PIPER, Gender, Tier, Voice

log = logging.getLogger(__name__)

#: What the voice's config does not say.
_VOICE_GENDERS = {"en_US-joe-medium": Gender.MALE}

# espeak-ng keeps process-wide state: one phonemizer, one caller at a time.
_ESPEAK_LOCK = threading.Lock()
_PHONEMIZER: EspeakPhonemizer | None = None


def _phonemize(language: str, text: str, config: PiperConfig) -> list[list[str]]:
    global _PHONEMIZER
    with _ESPEAK_LOCK:
        if _PHONEMIZER is None:
            _PHONEMIZER = EspeakPhonemizer()
        return _PHONEMIZER.phonemize(language, text, vowel_clusters=config.vowel_clusters)


@dataclass(frozen=True)
class PiperPayload:
    phoneme_ids: tuple[int, ...]
    #: noise_scale, length_scale, noise_w: the graph's "scales" input.
    scales: tuple[float, float, float]
    #: Each phoneme word as (first id, end id, phonemes): what word timings are cut from.
    word_spans: tuple[tuple[int, int, str], ...] = ()


def _word_spans(
    phonemes: list[str], id_map: Mapping[str, Sequence[int]]
) -> tuple[tuple[int, int, str], ...]:
    """Where each phoneme word sits in the ids ``phonemes_to_ids`` makes: BOS and a pad
    first, then each phoneme's ids and a pad (phonemes missing from the map are skipped)."""
    known = [p for p in phonemes if p in id_map]
    positions = []
    position = 2
    for phoneme in known:
        positions.append(position)
        position += len(id_map[phoneme]) + 1
    positions.append(position)
    return tuple(
        (positions[a], positions[b], "".join(known[a:b])) for a, b in word_groups(known)
    )


class PiperEngine(Engine[PreparedItem]):
    name = PIPER

    def __init__(self, settings: TtsSettings, model_dir: Path) -> None:
        super().__init__(settings.piper_batcher, settings.piper_instances)
        self._model_dir = model_dir
        self._threads = settings.piper_threads
        self.threads_per_instance = settings.piper_threads
        self.padded_batching = settings.piper_padded_batching
        self._model_path: Path | None = None
        self._config: PiperConfig | None = None
        self._voice: Voice | None = None
        self.sample_rate = 22050
        self.model_version = ""
        # Piper always runs on the CPU provider (the gpu image moves only Kokoro).
        self.runtime = f"{versions_of('piper-tts', 'onnxruntime')}; CPUExecutionProvider"
        self._session: ort.InferenceSession | None = None
        self._session_lock = threading.Lock()

    def load(self) -> None:
        assets = piper_assets(self._model_dir)
        config_dict = json.loads(assets.config_path.read_text())
        config = PiperConfig.from_dict(config_dict)
        language = str(config_dict.get("language", {}).get("code", "en_US")).replace("_", "-")
        self._model_path = assets.model_path
        self._config = config
        self.sample_rate = config.sample_rate
        self.model_version = assets.model_sha256
        self._voice = Voice(
            name=PIPER_VOICE,
            engine=PIPER,
            language_code=language,
            gender=_VOICE_GENDERS.get(PIPER_VOICE, Gender.UNSPECIFIED),
            sample_rate=config.sample_rate,
            tier=Tier.STANDARD,
            phonemizer_language=config.espeak_voice,
        )
        _phonemize(config.espeak_voice, "warm up", config)  # loads espeak-ng data once

    def voices(self) -> list[Voice]:
        return [self._voice] if self._voice is not None else []

    def prepare(self, sentence: str, voice: Voice, speaking_rate: float) -> PreparedItem:
        config = self._require_config()
        # espeak may cut one of our sentences in two (at ';' for instance): one item anyway.
        phonemes: list[str] = []
        for part in _phonemize(voice.phonemizer_language, sentence, config):
            if phonemes and part:
                phonemes.append(" ")
            phonemes.extend(part)
        if not any(p.isalpha() for p in phonemes):
            raise InvalidArgument(f"nothing to say in {sentence[:60]!r} for voice {voice.name}")
        ids = tuple(phonemes_to_ids(phonemes, config.phoneme_id_map))
        scales = (config.noise_scale, config.length_scale / speaking_rate, config.noise_w_scale)
        spans = _word_spans(phonemes, config.phoneme_id_map)
        return PreparedItem(
            sentence, voice, speaking_rate, len(ids), PiperPayload(ids, scales, spans)
        )

    def _shared_session(self) -> ort.InferenceSession:
        """One session for every instance: ``run`` is thread-safe, and with one intra-op
        thread each call computes on its caller's thread, so instances still run in
        parallel while the weights (63 MB, about 90 MB once loaded) are held once."""
        with self._session_lock:
            if self._session is None:
                assert self._model_path is not None
                self._session = ort.InferenceSession(
                    str(self._model_path),
                    session_options(self._threads),
                    providers=["CPUExecutionProvider"],
                )
            return self._session

    def _require_config(self) -> PiperConfig:
        if self._config is None:
            raise RuntimeError("PiperEngine.load() first")
        return self._config

    # ------------------------------------------------------------------ instances

    def build_instance(self, index: int) -> BatchFunction[PreparedItem, RenderedSentence]:
        session = self._shared_session()
        frame_s = self._require_config().hop_length / self.sample_rate
        hop = self._require_config().hop_length
        padded = self.padded_batching

        def run_batch(items: list[PreparedItem]) -> Sequence[RenderedSentence | BaseException]:
            if padded and len(items) > 1:
                return run_padded(session, items, hop, frame_s)
            return [run_one(session, item, frame_s) for item in items]

        return run_batch


def _inputs(ids: Sequence[Sequence[int]], scales: tuple[float, float, float]) -> dict[
    str, np.ndarray
]:
    width = max(len(i) for i in ids)
    batch = np.zeros((len(ids), width), dtype=np.int64)  # 0 is Piper's pad id
    for row, sequence in enumerate(ids):
        batch[row, : len(sequence)] = sequence
    return {
        "input": batch,
        "input_lengths": np.array([len(i) for i in ids], dtype=np.int64),
        "scales": np.array(scales, dtype=np.float32),
    }


def run_one(
    session: ort.InferenceSession, item: PreparedItem, frame_s: float
) -> RenderedSentence | BaseException:
    payload: PiperPayload = item.payload
    try:
        audio, frames = session.run(
            None, _inputs([payload.phoneme_ids], payload.scales), run_options([item])
        )
    except Exception as error:
        return engine_failure(PIPER, error)
    return RenderedSentence(
        peak_normalize(np.asarray(audio, dtype=np.float32).reshape(-1)),
        spoken_words(frames, payload.word_spans, frame_s),
    )


def run_padded(
    session: ort.InferenceSession, items: Sequence[PreparedItem], hop: int, frame_s: float
) -> list[RenderedSentence | BaseException]:
    """One ONNX call per group of items sharing scales (the graph takes one set per call)."""
    outcomes: list[RenderedSentence | BaseException] = [RuntimeError("not rendered")] * len(
        items
    )
    groups: dict[tuple[float, float, float], list[int]] = {}
    for position, item in enumerate(items):
        groups.setdefault(item.payload.scales, []).append(position)
    for scales, positions in groups.items():
        ids = [items[p].payload.phoneme_ids for p in positions]
        try:
            audio, frames = session.run(
                None, _inputs(ids, scales), run_options([items[p] for p in positions])
            )
        except Exception as error:
            if len(positions) == 1:
                outcomes[positions[0]] = engine_failure(PIPER, error)
                continue
            raise  # the batcher re-runs the items one by one, isolating the bad one
        audio = np.asarray(audio, dtype=np.float32).reshape(len(positions), -1)
        frames = np.asarray(frames).reshape(len(positions), -1)
        for row, position in enumerate(positions):
            length = int(frames[row].sum()) * hop  # the padded ids' frames are masked to 0
            outcomes[position] = RenderedSentence(
                peak_normalize(audio[row, :length]),
                spoken_words(frames[row], items[position].payload.word_spans, frame_s),
            )
    return outcomes
