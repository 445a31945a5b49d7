"""The voice catalog: what ListVoices shows and what routing and fallback choose from."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Tier(enum.IntEnum):
    """Quality tier; values match speech.v1.VoiceTier."""

    STANDARD = 1  # Piper: cheap, CPU
    HIGH = 2  # Kokoro-82M: about ten times the compute


class Gender(enum.IntEnum):
    """Values match speech.v1.VoiceGender."""

    UNSPECIFIED = 0
    FEMALE = 1
    MALE = 2


PIPER = "piper"
KOKORO = "kokoro"
ENGINE_TIERS = {PIPER: Tier.STANDARD, KOKORO: Tier.HIGH}
BLENDABLE_ENGINES = frozenset({KOKORO})


@dataclass(frozen=True)
class Voice:
    name: str
    engine: str
    #: BCP-47, e.g. "en-US".
    language_code: str
    gender: Gender
    sample_rate: int
    tier: Tier
    #: What the engine's phonemizer calls the language (espeak-ng voice, e.g. "en-us").
    phonemizer_language: str
    #: For a blend (tts_service.blending): its voices and their weights, summing to 1.
    blend: tuple[tuple[str, float], ...] = ()

    @property
    def blendable(self) -> bool:
        """Whether it can be part of a blend: Kokoro voices (style vectors mix)."""
        return self.engine in BLENDABLE_ENGINES and not self.blend

    def matches_language(self, wanted: str) -> bool:
        """'en' matches every English voice, 'en-US' only American ones (case-insensitive)."""
        wanted = wanted.strip().replace("_", "-").lower()
        if not wanted:
            return True
        mine = self.language_code.lower()
        return mine == wanted or mine.startswith(wanted + "-")


#: Kokoro voice names start with a language letter and a gender letter.
_KOKORO_LANGUAGES = {"a": ("en-US", "en-us"), "b": ("en-GB", "en-gb")}
_KOKORO_GENDERS = {"f": Gender.FEMALE, "m": Gender.MALE}


def kokoro_voice(name: str, sample_rate: int) -> Voice | None:
    """The catalog entry of a Kokoro voice name such as 'af_heart'; None if not English."""
    if len(name) < 3 or name[2] != "_" or name[0] not in _KOKORO_LANGUAGES:
        return None
    language_code, espeak_language = _KOKORO_LANGUAGES[name[0]]
    gender = _KOKORO_GENDERS.get(name[1], Gender.UNSPECIFIED)
    return Voice(name, KOKORO, language_code, gender, sample_rate, Tier.HIGH, espeak_language)


class VoiceCatalog:
    """Every voice the loaded engines offer, by name."""

    def __init__(self, voices: Iterable[Voice]) -> None:
        self._by_name = {voice.name: voice for voice in voices}
        #: closest() for the catalog's own voices (every request routes through it; a
        #: blend, made per request, is not kept, so callers cannot grow this).
        self._closest: dict[tuple[Voice, str, str], Voice | None] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Voice | None:
        return self._by_name.get(name)

    def list(self, language_code: str = "", engine: str = "") -> list[Voice]:
        engine = engine.strip().lower()
        return [
            voice
            for voice in self._by_name.values()
            if (not engine or voice.engine == engine) and voice.matches_language(language_code)
        ]

    def closest(self, voice: Voice, engine: str, preferred: str = "") -> Voice | None:
        """The voice of ``engine`` most like ``voice``: same language and gender if possible.

        Ties go to ``preferred`` (the engine's default voice), then by name, so the choice is
        stable.
        """
        key = (voice, engine, preferred)
        if key in self._closest:
            return self._closest[key]
        found = self._closest_uncached(voice, engine, preferred)
        if self._by_name.get(voice.name) == voice:
            self._closest[key] = found
        return found

    def _closest_uncached(self, voice: Voice, engine: str, preferred: str) -> Voice | None:
        candidates = self.list(engine=engine)
        if not candidates:
            return None

        def distance(other: Voice) -> tuple[int, int, int, int, str]:
            same_language = other.language_code.lower() == voice.language_code.lower()
            same_family = other.language_code.split("-")[0] == voice.language_code.split("-")[0]
            same_gender = voice.gender == Gender.UNSPECIFIED or other.gender == voice.gender
            return (
                not same_family,
                not same_gender,
                not same_language,
                other.name != preferred,
                other.name,
            )

        return min(candidates, key=distance)
