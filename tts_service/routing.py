"""Which voice serves a request, and which one stands in when its engine cannot.

A named voice decides the engine; without one the tier does (STANDARD: Piper, HIGH:
Kokoro). The stand-in is the other engine's closest voice (same language and gender where it
has one), used when the chosen engine is failing, or overloaded where moving the work adds
capacity (``tts.overload_fallback``; the synthesizer decides, since it knows the engines).
"""

from __future__ import annotations

from dataclasses import dataclass

from speech_platform.errors import InvalidArgument, NotFound
from speech_platform.metrics import TTS_FALLBACKS
from tts_service.blending import blended_voice, is_blend
from tts_service.voices import ENGINE_TIERS, KOKORO, PIPER, Tier, Voice, VoiceCatalog

#: Why a request was served by the other engine (the metric's ``reason`` label).
OVERLOADED = "overloaded"
ENGINE_ERROR = "engine_error"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Route:
    voice: Voice
    #: Who serves instead when ``voice``'s engine cannot; None if fallback is off or impossible.
    fallback: Voice | None
    #: Set when the engine of the requested tier is not loaded and the other one serves.
    rerouted_reason: str = ""


def parse_tier(value: int) -> Tier:
    if value == 0:
        return Tier.STANDARD
    try:
        return Tier(value)
    except ValueError:
        raise InvalidArgument(
            f"tier {value} is not a known voice tier; use VOICE_TIER_STANDARD or VOICE_TIER_HIGH"
        ) from None


def other_engine(engine: str) -> str:
    return KOKORO if engine == PIPER else PIPER


class Router:
    def __init__(self, catalog: VoiceCatalog, default_voices: dict[str, str]) -> None:
        self.catalog = catalog
        #: Engine name -> the voice a tier-only request gets.
        self.default_voices = default_voices

    def _engine_default(self, engine: str) -> Voice | None:
        voice = self.catalog.get(self.default_voices.get(engine, ""))
        if voice is not None and voice.engine == engine:
            return voice
        candidates = self.catalog.list(engine=engine)
        return min(candidates, key=lambda v: v.name) if candidates else None

    def route(self, voice_name: str, tier: int, *, disable_fallback: bool) -> Route:
        rerouted = ""
        if voice_name.strip():
            voice = self.catalog.get(voice_name.strip())
            if voice is None and is_blend(voice_name):
                voice = blended_voice(self.catalog, voice_name.strip())
            if voice is None:
                raise NotFound(
                    f"voice {voice_name.strip()!r} not found; ListVoices lists the "
                    f"{len(self.catalog)} voices this server offers"
                )
        else:
            wanted = next(e for e, t in ENGINE_TIERS.items() if t == parse_tier(tier))
            chosen = self._engine_default(wanted)
            if chosen is None:  # that engine is not loaded on this server
                chosen = self._engine_default(other_engine(wanted))
                rerouted = UNAVAILABLE
                if chosen is None or disable_fallback:
                    raise NotFound(f"no {wanted} voice is available on this server")
            voice = chosen
        fallback = None
        if not disable_fallback:
            other = other_engine(voice.engine)
            fallback = self.catalog.closest(
                voice, other, preferred=self.default_voices.get(other, "")
            )
        return Route(voice, fallback, rerouted)


def count_fallback(from_engine: str, reason: str) -> None:
    TTS_FALLBACKS.labels(from_engine, reason).inc()
