"""How ``speechctl transcribe`` prints a transcript: one function per ``--format``.

``text`` and ``json`` live here; subtitles (``srt``, ``vtt``) are one cue per segment,
formatted by speech_client.subtitles (the same functions the server's HTTP API answers
``response_format=srt|vtt`` with).
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import json_format

from speech.v1 import stt_pb2
from speech_client.subtitles import Cue, to_srt, to_vtt

TranscriptFormatter = Callable[[stt_pb2.TranscribeResponse], str]


def as_text(response: stt_pb2.TranscribeResponse) -> str:
    return response.text.strip()


def as_json(response: stt_pb2.TranscribeResponse) -> str:
    """The whole response (segments, words, timings) in proto3 JSON, one object per file."""
    return json_format.MessageToJson(response, indent=None, preserving_proto_field_name=True)


def timed_segments(response: stt_pb2.TranscribeResponse) -> list[tuple[float, float, str]]:
    """(start seconds, end seconds, text) of each segment: what a subtitle cue holds."""
    return [(s.start_seconds, s.end_seconds, s.text) for s in response.segments]


def as_srt(response: stt_pb2.TranscribeResponse) -> str:
    return to_srt(Cue(*cue) for cue in timed_segments(response))


def as_vtt(response: stt_pb2.TranscribeResponse) -> str:
    return to_vtt(Cue(*cue) for cue in timed_segments(response))


FORMATTERS: dict[str, TranscriptFormatter] = {
    "text": as_text,
    "json": as_json,
    "srt": as_srt,
    "vtt": as_vtt,
}


def register_format(name: str, formatter: TranscriptFormatter) -> None:
    """Adds ``--format NAME`` (the hook for srt and vtt)."""
    FORMATTERS[name] = formatter
