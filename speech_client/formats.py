"""How ``speechctl transcribe`` prints a transcript: one function per ``--format``.

``text`` and ``json`` live here. Subtitles (``srt``, ``vtt``) come from the platform's subtitle
helpers (pure functions over cues); wiring them is one call per format, and ``--format srt``
then appears in the command without further change::

    register_format("srt", lambda r: to_srt(Cue(*cue) for cue in timed_segments(r)))
    register_format("vtt", lambda r: to_vtt(Cue(*cue) for cue in timed_segments(r)))
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import json_format

from speech.v1 import stt_pb2

TranscriptFormatter = Callable[[stt_pb2.TranscribeResponse], str]


def as_text(response: stt_pb2.TranscribeResponse) -> str:
    return response.text.strip()


def as_json(response: stt_pb2.TranscribeResponse) -> str:
    """The whole response (segments, words, timings) in proto3 JSON, one object per file."""
    return json_format.MessageToJson(response, indent=None, preserving_proto_field_name=True)


def timed_segments(response: stt_pb2.TranscribeResponse) -> list[tuple[float, float, str]]:
    """(start seconds, end seconds, text) of each segment: what a subtitle cue holds."""
    return [(s.start_seconds, s.end_seconds, s.text) for s in response.segments]


FORMATTERS: dict[str, TranscriptFormatter] = {"text": as_text, "json": as_json}


def register_format(name: str, formatter: TranscriptFormatter) -> None:
    """Adds ``--format NAME`` (the hook for srt and vtt)."""
    FORMATTERS[name] = formatter
