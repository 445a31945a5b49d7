"""A TranscribeResponse in the shapes OpenAI's ``response_format`` names.

``json`` ({"text"}), ``text``, ``srt``, ``vtt`` (speech_client.subtitles, one cue per
segment) and ``verbose_json`` (language, duration, segments and, when asked for, words).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from speech.v1 import stt_pb2
from speech_client.subtitles import Cue, to_srt, to_vtt

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["word", "segment"]

#: Whisper's language codes -> the English names OpenAI's verbose_json gives; a code not
#: listed is given as it is.
LANGUAGE_NAMES = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german",
    "el": "greek", "en": "english", "es": "spanish", "fi": "finnish", "fr": "french",
    "he": "hebrew", "hi": "hindi", "hu": "hungarian", "id": "indonesian", "it": "italian",
    "ja": "japanese", "ko": "korean", "nl": "dutch", "no": "norwegian", "pl": "polish",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sv": "swedish", "th": "thai",
    "tr": "turkish", "uk": "ukrainian", "vi": "vietnamese", "zh": "chinese",
}  # fmt: skip


def cues(response: stt_pb2.TranscribeResponse) -> list[Cue]:
    return [Cue(s.start_seconds, s.end_seconds, s.text) for s in response.segments]


def usage(response: stt_pb2.TranscribeResponse) -> dict[str, Any]:
    """OpenAI's duration-based usage (whole seconds of audio)."""
    return {"type": "duration", "seconds": math.ceil(response.audio_duration_seconds)}


def verbose(
    response: stt_pb2.TranscribeResponse, task: str, granularities: set[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": LANGUAGE_NAMES.get(response.language_code, response.language_code),
        "duration": round(response.audio_duration_seconds, 3),
        "text": response.text,
        "usage": usage(response),
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": 0,
                "start": round(s.start_seconds, 3),
                "end": round(s.end_seconds, 3),
                "text": s.text,
                # Token ids and the sampling temperature are not kept by the engine.
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": 0.0,
                "no_speech_prob": s.no_speech_probability,
            }
            for s in response.segments
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word.strip(), "start": round(w.start_seconds, 3),
             "end": round(w.end_seconds, 3)}
            for w in response.words
        ]  # fmt: skip
    return body


def render(
    response: stt_pb2.TranscribeResponse,
    response_format: ResponseFormat,
    task: str,
    granularities: set[str],
) -> Response:
    if response_format == "text":
        return PlainTextResponse(response.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(to_srt(cues(response)))
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(cues(response)), media_type="text/vtt")
    if response_format == "verbose_json":
        return JSONResponse(verbose(response, task, granularities))
    return JSONResponse({"text": response.text, "usage": usage(response)})
