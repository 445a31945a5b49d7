"""Voice catalog filters and routing decisions (plain data: no models needed)."""

from __future__ import annotations

import pytest

from speech_platform.errors import InvalidArgument, NotFound
from tts_service.routing import UNAVAILABLE, Router
from tts_service.voices import KOKORO, PIPER, Gender, Tier, Voice, VoiceCatalog, kokoro_voice

JOE = Voice("en_US-joe-medium", PIPER, "en-US", Gender.MALE, 22050, Tier.STANDARD, "en-us")
KOKORO_NAMES = ["af_heart", "af_bella", "am_adam", "am_michael", "bf_emma", "bm_george"]
DEFAULTS = {PIPER: JOE.name, KOKORO: "af_heart"}


def kokoro_voices(names=KOKORO_NAMES):
    return [v for v in (kokoro_voice(n, 24000) for n in names) if v is not None]


@pytest.fixture
def catalog():
    return VoiceCatalog([JOE, *kokoro_voices()])


def test_kokoro_names_carry_language_and_gender():
    assert kokoro_voice("bf_emma", 24000) == Voice(
        "bf_emma", KOKORO, "en-GB", Gender.FEMALE, 24000, Tier.HIGH, "en-gb"
    )
    assert kokoro_voice("jf_alpha", 24000) is None  # not an English voice
    assert kokoro_voice("x", 24000) is None


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("", 7),
        ("en", 7),
        ("EN", 7),
        ("en-US", 5),
        ("en_us", 5),
        ("en-gb", 2),
        ("fr", 0),
        ("e", 0),
    ],
)
def test_language_filter(catalog, language, expected):
    assert len(catalog.list(language_code=language)) == expected


def test_engine_filter(catalog):
    assert [v.name for v in catalog.list(engine="piper")] == [JOE.name]
    assert len(catalog.list(engine="KOKORO")) == 6
    assert [v.name for v in catalog.list("en-GB", engine="kokoro")] == ["bf_emma", "bm_george"]


def test_a_named_voice_decides_the_engine(catalog):
    route = Router(catalog, DEFAULTS).route("bm_george", 1, disable_fallback=False)
    assert route.voice.name == "bm_george" and route.voice.engine == KOKORO


def test_an_unknown_voice_is_not_found(catalog):
    with pytest.raises(NotFound, match="'nobody' not found"):
        Router(catalog, DEFAULTS).route("nobody", 0, disable_fallback=False)


@pytest.mark.parametrize(
    ("tier", "voice"), [(0, JOE.name), (Tier.STANDARD, JOE.name), (Tier.HIGH, "af_heart")]
)
def test_without_a_voice_the_tier_decides(catalog, tier, voice):
    assert Router(catalog, DEFAULTS).route("", tier, disable_fallback=False).voice.name == voice


def test_an_unknown_tier_is_refused(catalog):
    with pytest.raises(InvalidArgument, match="tier 7"):
        Router(catalog, DEFAULTS).route("", 7, disable_fallback=False)


def test_fallback_is_the_closest_voice_of_the_other_engine(catalog):
    router = Router(catalog, DEFAULTS)
    # Joe (male, en-US) -> a male American Kokoro voice, not the female default.
    assert router.route(JOE.name, 0, disable_fallback=False).fallback.name == "am_adam"
    assert router.route("af_bella", 0, disable_fallback=False).fallback == JOE
    assert router.route(JOE.name, 0, disable_fallback=True).fallback is None


def test_fallback_prefers_same_gender_then_same_region():
    catalog = VoiceCatalog([JOE, *kokoro_voices(["af_heart", "bm_george", "bf_emma"])])
    fallback = Router(catalog, DEFAULTS).route(JOE.name, 0, disable_fallback=False).fallback
    assert fallback.name == "bm_george"  # male beats American


def test_a_tier_whose_engine_is_not_loaded_is_served_by_the_other():
    router = Router(VoiceCatalog([JOE]), DEFAULTS)
    route = router.route("", Tier.HIGH, disable_fallback=False)
    assert route.voice == JOE and route.rerouted_reason == UNAVAILABLE and route.fallback is None
    with pytest.raises(NotFound, match="no kokoro voice"):
        router.route("", Tier.HIGH, disable_fallback=True)
