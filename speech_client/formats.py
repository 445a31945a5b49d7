"""How ``speechctl transcribe`` prints a transcript: one function per ``--format``.

``text`` and ``json`` live here. Subtitles (``srt``, ``vtt``) are written by the platform's
shared subtitle helpers; whoever wires them calls ``register_format("srt", fn)`` (for example
in speech_client/cli.py's ``FORMATTERS`` set-up) and ``--format srt`` appears in the command
without further change.
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


FORMATTERS: dict[str, TranscriptFormatter] = {"text": as_text, "json": as_json}


def register_format(name: str, formatter: TranscriptFormatter) -> None:
    """Adds ``--format NAME`` (the hook for srt and vtt)."""
    FORMATTERS[name] = formatter
