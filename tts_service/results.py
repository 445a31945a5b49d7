"""What the TTS core takes and gives: plain dataclasses, no wire types.

``SynthesisRequest`` is a checked-at-the-edge request, ``SynthesisResult`` a whole answer,
``SynthesisChunk`` one sentence of a streamed answer. tts_service/convert.py turns them into
speech.v1 messages (and into the bytes the response cache keeps).
"""

from __future__ import annotations

from dataclasses import dataclass

from speech_platform import priority
from tts_service.audio_encoding import Encoding
from tts_service.timings import MarkTime, WordTime

PRIORITY_LOW, PRIORITY_NORMAL, PRIORITY_HIGH = priority.LOW, priority.NORMAL, priority.HIGH


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    #: A voice name from the catalog; empty selects by tier.
    voice: str = ""
    #: speech.v1.VoiceTier value (0: STANDARD).
    tier: int = 0
    #: speech.v1.AudioEncoding value (0: WAV).
    encoding: int = 0
    sample_rate_hertz: int = 0
    speaking_rate: float = 0.0
    volume_gain_db: float = 0.0
    disable_fallback: bool = False
    #: PRIORITY_LOW, PRIORITY_NORMAL or PRIORITY_HIGH.
    priority: int = PRIORITY_NORMAL
    skip_cache: bool = False
    #: Seconds the caller still waits; sentences not started by then are dropped.
    timeout_s: float | None = None
    #: Who asks (speech_platform.callers), for fair queuing; never part of a cache key.
    caller: str | None = None
    #: Return when each word is spoken (WordTime, in the request's characters).
    enable_word_timings: bool = False
    #: (name, character offset) positions whose audio time is returned.
    marks: tuple[tuple[str, int], ...] = ()
    #: ``text`` is SSML (tts_service.ssml).
    ssml: bool = False


@dataclass(frozen=True)
class SynthesisResult:
    audio: bytes
    encoding: Encoding
    sample_rate: int
    duration_s: float
    engine: str
    voice: str
    cache_hit: bool = False
    fallback: bool = False
    fallback_reason: str = ""
    #: The response-cache key this audio is stored under ("" when there is no cache), so
    #: bulk jobs report where each text went without building the key again.
    cache_key: str = ""
    #: With enable_word_timings: each word of the request and when it is spoken.
    words: tuple[WordTime, ...] = ()
    marks: tuple[MarkTime, ...] = ()


@dataclass(frozen=True)
class SynthesisChunk:
    """One piece of a streamed response: the encoded audio that ends sentence ``index``."""

    audio: bytes
    index: int
    text: str
    encoding: Encoding
    sample_rate: int
    #: Seconds of audio this chunk's sentence adds.
    duration_s: float
    engine: str
    voice: str
    cache_hit: bool = False
    fallback: bool = False
    fallback_reason: str = ""
    #: Where this chunk's audio starts in the whole stream, in seconds.
    start_s: float = 0.0
    #: With enable_word_timings: the words this chunk speaks (times from the stream's start).
    words: tuple[WordTime, ...] = ()
    marks: tuple[MarkTime, ...] = ()
