"""Joins the decoded windows of one recording into a TranscribeResponse.

Window results carry times relative to their window; here they become absolute (offset of
the window added) and are clamped to the span the window owns, from its start to the start
of the next decoded piece, so times never go backwards across windows. Segments are
numbered in order, and the language of the recording is the one that covers the most speech.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from speech.v1 import stt_pb2
from stt_service.whisper_engine import WindowResult
from stt_service.windowing import Window

#: Languages written without spaces: their segments join without one.
_UNSPACED = {"zh", "ja", "th", "lo", "my", "yue"}


def build_response(
    pieces: Sequence[tuple[Window, WindowResult]],
    *,
    model: str,
    duration_s: float,
    fallback_language: str,
) -> stt_pb2.TranscribeResponse:
    """``pieces``: each decoded window with its result, in any order.

    ``fallback_language`` names the language when nothing was decoded (all silent): the
    requested one, the model's only one, or "" when it is unknown.
    """
    ordered = sorted(pieces, key=lambda piece: piece[0].start)
    response = stt_pb2.TranscribeResponse(
        model=model, audio_duration_seconds=duration_s, cache_hit=False
    )
    language, probability = _recording_language(ordered, fallback_language)
    response.language_code = language
    response.language_probability = probability
    texts: list[str] = []
    for index, (window, result) in enumerate(ordered):
        following = ordered[index + 1][0].offset_s if index + 1 < len(ordered) else duration_s
        span = (window.offset_s, min(following, duration_s))
        for segment in result.segments:
            text = segment.text.strip()
            if not text:
                continue
            start = _absolute(window, segment.start, span, is_start=True)
            response.segments.append(
                stt_pb2.Segment(
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
                    stt_pb2.WordInfo(
                        word=word.word,
                        start_seconds=word_start,
                        end_seconds=max(word_start, _absolute(window, word.end, span)),
                        probability=word.probability,
                    )
                )
    response.text = ("" if language in _UNSPACED else " ").join(texts)
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
