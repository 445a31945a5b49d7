"""OpenAI's model and voice names, mapped onto what this server runs.

Clients written for OpenAI name ``whisper-1`` or ``tts-1`` and voices such as ``alloy``;
these tables say which of our models, tiers and voices answer them (docs/http.md lists
them). Our own names (``tiny.en``, ``base``, ``af_heart``, ``en_US-joe-medium``) pass
through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from speech_platform.errors import NotFound
from tts_service.voices import Tier

#: OpenAI transcription models -> the server's default STT model.
STT_ALIASES: tuple[str, ...] = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")

#: OpenAI speech models -> our quality tier: Piper (standard) or Kokoro (high).
TTS_MODELS: dict[str, Tier] = {
    "tts-1": Tier.STANDARD,
    "tts-1-hd": Tier.HIGH,
    "gpt-4o-mini-tts": Tier.HIGH,
    # Our engines by name.
    "piper": Tier.STANDARD,
    "kokoro": Tier.HIGH,
}

#: OpenAI voices -> a Kokoro voice of a like character (high tier). Piper ships one voice,
#: so on the standard tier every OpenAI voice is en_US-joe-medium (the tier's default).
OPENAI_VOICES: dict[str, str] = {
    "alloy": "af_alloy",
    "ash": "am_michael",
    "coral": "af_heart",
    "echo": "am_echo",
    "fable": "bm_fable",
    "nova": "af_nova",
    "onyx": "am_onyx",
    "sage": "af_sarah",
    "shimmer": "af_bella",
    # Newer OpenAI voices.
    "ballad": "bm_george",
    "verse": "am_adam",
    "marin": "af_jessica",
    "cedar": "am_liam",
}


@dataclass(frozen=True)
class SpeechChoice:
    """What a speech request asks the Synthesizer for: a voice ("" = the tier's default)
    and a tier."""

    voice: str
    tier: Tier


def stt_model(name: str) -> str:
    """Our STT model for an OpenAI or our own name ("" = the server's default)."""
    cleaned = name.strip()
    return "" if cleaned in STT_ALIASES else cleaned


def speech_choice(model: str, voice: str) -> SpeechChoice:
    """The voice and tier for an OpenAI (model, voice) pair; unknown names pass through
    for the Synthesizer to refuse with the list of what exists."""
    tier = TTS_MODELS.get(model.strip())
    if tier is None:
        known = ", ".join(sorted(TTS_MODELS))
        raise NotFound(f"model {model!r} is not a speech model here; use one of {known}")
    wanted = voice.strip()
    if wanted in OPENAI_VOICES:
        return SpeechChoice(OPENAI_VOICES[wanted] if tier == Tier.HIGH else "", tier)
    return SpeechChoice(wanted, tier)
