"""Voice blends: a weighted mix of Kokoro voices, named like ``af_heart:0.7+am_adam:0.3``.

A Kokoro voice is a table of style vectors (one row per phoneme count); a blend is the
weighted sum of its voices' tables, weights normalised to sum 1, so any mix of the English
voices is a voice of its own. Piper's single voice has no style vector to mix. The blend's
language and phonemizer are its heaviest voice's (ties: the first named); its canonical name
(weights normalised, three significant digits) is what the cache key and responses see, so
"af_heart:7+am_adam:3" and "af_heart:0.7+am_adam:0.3" are one voice.
"""

from __future__ import annotations

import math
from dataclasses import replace

from speech_platform.errors import InvalidArgument
from tts_service.voices import Voice, VoiceCatalog

#: Most voices in one blend.
MAX_BLEND_VOICES = 4


def is_blend(name: str) -> bool:
    return ":" in name or "+" in name


def blended_voice(catalog: VoiceCatalog, spec: str) -> Voice:
    """The catalog entry of a blend, or INVALID_ARGUMENT saying what is wrong with it."""
    parts: list[tuple[Voice, float]] = []
    for term in spec.split("+"):
        name, colon, weight_text = term.strip().partition(":")
        voice = catalog.get(name.strip())
        if voice is None:
            raise InvalidArgument(f"voice blend {spec!r}: {name.strip()!r} is not a voice")
        if not voice.blendable:
            raise InvalidArgument(
                f"voice blend {spec!r}: {voice.name} ({voice.engine}) cannot be blended; "
                "ListVoices marks the voices that can"
            )
        try:
            weight = float(weight_text) if colon else 1.0
        except ValueError:
            raise InvalidArgument(
                f"voice blend {spec!r}: weight {weight_text!r} of {voice.name} is not a number"
            ) from None
        if not math.isfinite(weight) or weight <= 0:
            raise InvalidArgument(
                f"voice blend {spec!r}: weight of {voice.name} must be a positive number"
            )
        parts.append((voice, weight))
    names = [v.name for v, _ in parts]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"voice blend {spec!r} names a voice twice")
    if len(parts) > MAX_BLEND_VOICES:
        raise InvalidArgument(f"voice blend {spec!r} mixes more than {MAX_BLEND_VOICES} voices")
    total = sum(w for _, w in parts)
    normalised = tuple((v.name, w / total) for v, w in parts)
    heaviest = max(parts, key=lambda part: part[1])[0]  # max keeps the first of equals
    name = "+".join(f"{n}:{w:.3g}" for n, w in normalised)
    return replace(heaviest, name=name, blend=normalised)
