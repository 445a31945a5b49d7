"""Turns a decoded utterance into a StreamingTranscribeResponse with stream-relative times.

Each utterance is decoded as one window that starts ``offset_s`` into the stream, so every
time the engine reports (relative to the window) is shifted by that offset and clamped to
the audio the window held.

Stability of an interim result is the share of its words that the previous interim of the
same utterance already had, in the same places (the common prefix, compared without case
or punctuation): words that survived one more second of audio are likely to stay. The
first interim of an utterance has nothing to agree with and gets 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from speech.v1 import stt_pb2
from stt_service.whisper_engine import WindowResult

_WORD_CHARS = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class DecodedSpan:
    """Where a decoded window lies in the stream, and the speech inside it."""

    #: Stream time of the window's first sample.
    offset_s: float
    #: The window's length.
    duration_s: float
    #: The utterance's speech, as the VAD heard it.
    speech_start_s: float
    speech_end_s: float


def transcript_text(result: WindowResult) -> str:
    return " ".join(t for t in (s.text.strip() for s in result.segments) if t)


def comparable_words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing two hypotheses."""
    return [w for w in (_WORD_CHARS.sub("", word).lower() for word in text.split()) if w]


def stability(previous: Sequence[str], current: Sequence[str]) -> float:
    """The share of ``current`` that is a common prefix with ``previous`` (0 when empty)."""
    if not current:
        return 0.0
    agreed = 0
    for before, now in zip(previous, current, strict=False):
        if before != now:
            break
        agreed += 1
    return agreed / len(current)


def build_result(
    result: WindowResult,
    span: DecodedSpan,
    *,
    is_final: bool,
    utterance_index: int,
    model: str,
    first_segment_id: int,
    stability_value: float = 0.0,
) -> stt_pb2.StreamingTranscribeResponse:
    response = stt_pb2.StreamingTranscribeResponse(
        text=transcript_text(result),
        is_final=is_final,
        stability=1.0 if is_final else stability_value,
        start_seconds=round(span.speech_start_s, 3),
        end_seconds=round(span.speech_end_s, 3),
        language_code=result.language,
        utterance_index=utterance_index,
        model=model,
    )
    if is_final:
        response.alternatives.extend(
            stt_pb2.SpeechAlternative(text=a.text, score=a.score) for a in result.alternatives
        )
    for segment in result.segments:
        text = segment.text.strip()
        if not text:
            continue
        start = _absolute(span, segment.start)
        response.segments.append(
            stt_pb2.Segment(
                id=first_segment_id + len(response.segments),
                start_seconds=start,
                end_seconds=max(start, _absolute(span, segment.end)),
                text=text,
                avg_logprob=segment.avg_logprob,
                no_speech_probability=segment.no_speech_prob,
            )
        )
        for word in segment.words:
            word_start = _absolute(span, word.start)
            response.words.append(
                stt_pb2.WordInfo(
                    word=word.word,
                    start_seconds=word_start,
                    end_seconds=max(word_start, _absolute(span, word.end)),
                    probability=word.probability,
                )
            )
    return response


def _absolute(span: DecodedSpan, relative_s: float) -> float:
    return round(span.offset_s + min(max(relative_s, 0.0), span.duration_s), 3)
