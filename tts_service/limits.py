"""What one synthesis request may ask for, checked before anything is phonemized.

A text within ``max_text_chars`` can still expand (every digit of a long number becomes
words) and ask for far more audio than it looks: each limit here names its setting, and
the memory a request will hold (the rendered float samples, their concatenation, the encoded
output) is estimated from the audio it asks for, so the server's memory budget is checked
before the work, not discovered after it.

    >>> round(estimated_output_seconds("Tell me about a project you are proud of.", 1.0), 1)
    2.9
    >>> estimated_output_bytes(10.0, 24000)
    2400000
"""

from __future__ import annotations

from speech_platform.config import TtsSettings
from speech_platform.errors import InvalidArgument

#: Characters of normalised English text spoken per second at rate 1.0, on the slow side
#: (both voices speak about 15-17), so estimates err towards more audio.
CHARS_PER_SECOND = 14.0
#: Bytes held per output sample: float32 pieces, their concatenation, the encoded result.
BYTES_PER_SAMPLE = 10


def estimated_output_seconds(normalized: str, speaking_rate: float) -> float:
    return len(normalized) / CHARS_PER_SECOND / speaking_rate


def estimated_output_bytes(seconds: float, sample_rate: int) -> int:
    return int(seconds * sample_rate * BYTES_PER_SAMPLE)


def check_text_limits(
    normalized: str, sentences: int, speaking_rate: float, settings: TtsSettings
) -> float:
    """Raises InvalidArgument naming the limit a request passes; returns its estimated
    output seconds."""
    if len(normalized) > settings.max_normalized_chars:
        raise InvalidArgument(
            f"text becomes {len(normalized)} characters once numbers, symbols and "
            f"abbreviations are spelled out; this server takes at most "
            f"{settings.max_normalized_chars} (tts.max_normalized_chars): send less, or "
            "submit a bulk-synthesis job"
        )
    if sentences > settings.max_sentences:
        raise InvalidArgument(
            f"text has {sentences} sentences; this server takes at most "
            f"{settings.max_sentences} per request (tts.max_sentences): split it, or submit "
            "a bulk-synthesis job"
        )
    seconds = estimated_output_seconds(normalized, speaking_rate)
    if seconds > settings.max_output_seconds:
        raise InvalidArgument(
            f"text would make about {seconds:.0f} s of audio at speaking rate "
            f"{speaking_rate:g}; this server makes at most {settings.max_output_seconds:.0f} s "
            "per request (tts.max_output_seconds): split it, or submit a bulk-synthesis job"
        )
    return seconds
