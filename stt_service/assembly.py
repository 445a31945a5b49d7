"""Joins the decoded windows of one recording into a ``Transcript``; converts it to the wire.

Window results carry times relative to their window; here they become absolute (offset of
the window added) and are clamped to the span the window owns, from its start to the start
of the next decoded piece, so times never go backwards across windows. Segments are
numbered in order, and the language of the recording is the one that covers the most speech.

``Transcript`` is the STT core's domain result (``Transcriber.transcribe`` returns one); its
field names follow speech.v1.TranscribeResponse, which ``to_proto`` builds for the servicer
and the Jobs service. ``TRANSCRIPT_CODEC`` is how a transcript is kept in the response cache
(the serialized TranscribeResponse, as before).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from speech.v1 import stt_pb2
from speech_platform.cache.door import Codec
from stt_service.alternatives import Alternative, WindowAlternatives, combine, joiner_for
from stt_service.quality import QualityReport
from stt_service.whisper_engine import WindowResult
from stt_service.windowing import Window


@dataclass(frozen=True)
class TranscriptWord:
    word: str
    start_seconds: float
    end_seconds: float
    probability: float
    #: 1-based channel with per-channel recognition; 0 when channels were mixed down.
    channel_tag: int = 0


@dataclass(frozen=True)
class TranscriptSegment:
    id: int
    start_seconds: float
    end_seconds: float
    text: str
    avg_logprob: float
    no_speech_probability: float
    #: 1-based channel with per-channel recognition; 0 when channels were mixed down.
    channel_tag: int = 0


@dataclass(frozen=True)
class ChannelTranscript:
    """One channel's own text with per-channel recognition (stt_service/channels.py)."""

    channel_tag: int
    text: str
    language_code: str
    language_probability: float
    alternatives: tuple[Alternative, ...] = ()


@dataclass
class Transcript:
    """A recording's transcript: absolute times, segments numbered in order."""

    text: str = ""
    segments: list[TranscriptSegment] = field(default_factory=list)
    words: list[TranscriptWord] = field(default_factory=list)
    language_code: str = ""
    language_probability: float = 0.0
    audio_duration_seconds: float = 0.0
    #: The model that served it.
    model: str = ""
    #: N-best of the whole transcript, best first (the first is ``text``); see
    #: stt_service/alternatives.py. Empty unless asked for, and with per-channel results.
    alternatives: list[Alternative] = field(default_factory=list)
    window_alternatives: list[WindowAlternatives] = field(default_factory=list)
    #: Per-channel recognition: each channel's own result (stt_service/channels.py).
    channels: list[ChannelTranscript] = field(default_factory=list)
    quality: QualityReport | None = None


def to_proto(transcript: Transcript, *, cache_hit: bool = False) -> stt_pb2.TranscribeResponse:
    return stt_pb2.TranscribeResponse(
        text=transcript.text,
        segments=[
            stt_pb2.Segment(
                id=s.id,
                start_seconds=s.start_seconds,
                end_seconds=s.end_seconds,
                text=s.text,
                avg_logprob=s.avg_logprob,
                no_speech_probability=s.no_speech_probability,
                channel_tag=s.channel_tag,
            )
            for s in transcript.segments
        ],
        words=[
            stt_pb2.WordInfo(
                word=w.word,
                start_seconds=w.start_seconds,
                end_seconds=w.end_seconds,
                probability=w.probability,
                channel_tag=w.channel_tag,
            )
            for w in transcript.words
        ],
        language_code=transcript.language_code,
        language_probability=transcript.language_probability,
        audio_duration_seconds=transcript.audio_duration_seconds,
        model=transcript.model,
        cache_hit=cache_hit,
        alternatives=_alternatives_to_proto(transcript.alternatives),
        window_alternatives=[
            stt_pb2.WindowAlternatives(
                start_seconds=w.start_seconds,
                end_seconds=w.end_seconds,
                alternatives=_alternatives_to_proto(w.alternatives),
                channel_tag=w.channel_tag,
            )
            for w in transcript.window_alternatives
        ],
        channels=[
            stt_pb2.ChannelResult(
                channel_tag=c.channel_tag,
                text=c.text,
                language_code=c.language_code,
                language_probability=c.language_probability,
                alternatives=_alternatives_to_proto(c.alternatives),
            )
            for c in transcript.channels
        ],
        quality=transcript.quality.to_proto() if transcript.quality else None,
    )


def _alternatives_to_proto(
    alternatives: Sequence[Alternative],
) -> list[stt_pb2.SpeechAlternative]:
    return [stt_pb2.SpeechAlternative(text=a.text, score=a.score) for a in alternatives]


def _alternatives_from_proto(
    alternatives: Sequence[stt_pb2.SpeechAlternative],
) -> tuple[Alternative, ...]:
    return tuple(Alternative(a.text, a.score) for a in alternatives)


def from_proto(response: stt_pb2.TranscribeResponse) -> Transcript:
    return Transcript(
        text=response.text,
        segments=[
            TranscriptSegment(
                id=s.id,
                start_seconds=s.start_seconds,
                end_seconds=s.end_seconds,
                text=s.text,
                avg_logprob=s.avg_logprob,
                no_speech_probability=s.no_speech_probability,
                channel_tag=s.channel_tag,
            )
            for s in response.segments
        ],
        words=[
            TranscriptWord(w.word, w.start_seconds, w.end_seconds, w.probability, w.channel_tag)
            for w in response.words
        ],
        language_code=response.language_code,
        language_probability=response.language_probability,
        audio_duration_seconds=response.audio_duration_seconds,
        model=response.model,
        alternatives=list(_alternatives_from_proto(response.alternatives)),
        window_alternatives=[
            WindowAlternatives(
                w.start_seconds,
                w.end_seconds,
                _alternatives_from_proto(w.alternatives),
                w.channel_tag,
            )
            for w in response.window_alternatives
        ],
        channels=[
            ChannelTranscript(
                c.channel_tag,
                c.text,
                c.language_code,
                c.language_probability,
                _alternatives_from_proto(c.alternatives),
            )
            for c in response.channels
        ],
        quality=QualityReport.from_proto(response.quality)
        if response.HasField("quality")
        else None,
    )


#: A transcript in the response cache: its TranscribeResponse, serialized.
TRANSCRIPT_CODEC: Codec[Transcript] = Codec(
    encode=lambda transcript: to_proto(transcript).SerializeToString(),
    decode=lambda data: from_proto(stt_pb2.TranscribeResponse.FromString(data)),
)


def build_transcript(
    pieces: Sequence[tuple[Window, WindowResult]],
    *,
    model: str,
    duration_s: float,
    fallback_language: str,
    max_alternatives: int = 0,
) -> Transcript:
    """``pieces``: each decoded window with its result, in any order.

    ``fallback_language`` names the language when nothing was decoded (all silent): the
    requested one, the model's only one, or "" when it is unknown.
    """
    ordered = sorted(pieces, key=lambda piece: piece[0].start)
    response = Transcript(model=model, audio_duration_seconds=duration_s)
    language, probability = _recording_language(ordered, fallback_language)
    response.language_code = language
    response.language_probability = probability
    texts: list[str] = []
    for index, (window, result) in enumerate(ordered):
        following = ordered[index + 1][0].offset_s if index + 1 < len(ordered) else duration_s
        span = (window.offset_s, min(following, duration_s))
        if result.alternatives:
            response.window_alternatives.append(
                WindowAlternatives(round(span[0], 3), round(span[1], 3), result.alternatives)
            )
        for segment in result.segments:
            text = segment.text.strip()
            if not text:
                continue
            start = _absolute(window, segment.start, span, is_start=True)
            response.segments.append(
                TranscriptSegment(
                    id=len(response.segments),
                    start_seconds=start,
                    end_seconds=max(start, _absolute(window, segment.end, span)),
                    text=text,
                    avg_logprob=segment.avg_logprob,
                    no_speech_probability=segment.no_speech_prob,
                )
            )
            texts.append(text)
            for word in segment.words:
                word_start = _absolute(window, word.start, span, is_start=True)
                response.words.append(
                    TranscriptWord(
                        word=word.word,
                        start_seconds=word_start,
                        end_seconds=max(word_start, _absolute(window, word.end, span)),
                        probability=word.probability,
                    )
                )
    response.text = joiner_for(language).join(texts)
    response.alternatives = combine(
        [w.alternatives for w in response.window_alternatives],
        limit=max_alternatives,
        language=language,
    )
    return response


def _absolute(
    window: Window, local_s: float, span: tuple[float, float], *, is_start: bool = False
) -> float:
    low, high = span
    return round(min(max(window.absolute_s(local_s, is_start=is_start), low), high), 3)


def _recording_language(
    pieces: Sequence[tuple[Window, WindowResult]], fallback: str
) -> tuple[str, float]:
    """The language heard over the most seconds, with its duration-weighted probability."""
    seconds: dict[str, float] = defaultdict(float)
    weighted: dict[str, float] = defaultdict(float)
    for window, result in pieces:
        seconds[result.language] += window.duration_s
        weighted[result.language] += window.duration_s * result.language_probability
    if not seconds:
        return fallback, 1.0 if fallback else 0.0
    language = max(seconds, key=lambda code: seconds[code])
    total = seconds[language]
    return language, (weighted[language] / total) if total > 0 else 1.0
