"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations`` on UnaryTranscription.

The multipart form becomes a ``TranscribeRequest`` and goes to the very core the gRPC
Transcribe calls (stt_service.unary): the same checks, cache key, batchers and admission.
``stream=true`` answers with server-sent events in OpenAI's shape: one
``transcript.text.delta`` per segment, then ``transcript.text.done``.

``temperature`` is accepted and ignored: the engine decodes by beam search with its own
fallback rule (stt_service/whisper_engine.py), so the same audio always gives the same text
(and the cache can serve it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast, get_args

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from speech.v1 import stt_pb2
from speech_http.aliases import STT_ALIASES, stt_model
from speech_http.deadlines import TimeRemaining
from speech_http.errors import HttpError
from speech_http.transcripts import Granularity, ResponseFormat, render, usage

if TYPE_CHECKING:
    from stt_service.unary import UnaryTranscription

_FORMATS = get_args(ResponseFormat)
_GRANULARITIES = get_args(Granularity)

#: The form both routes take, for the OpenAPI document (the body is parsed by hand so
#: that an oversized upload is refused with 413 while it streams in).
FORM_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "WAV, FLAC, MP3, OGG/Opus, M4A, WebM ..."},
                        "model": {"type": "string", "description":
                                  "whisper-1 (and OpenAI's other names) = the default; "
                                  "or a model GET /v1/models lists"},
                        "language": {"type": "string", "description": "ISO 639-1"},
                        "prompt": {"type": "string"},
                        "response_format": {"type": "string", "enum": list(_FORMATS)},
                        "temperature": {"type": "number", "description": "ignored"},
                        "timestamp_granularities[]": {
                            "type": "array", "items": {"enum": list(_GRANULARITIES)}},
                        "stream": {"type": "boolean"},
                    },
                }
            }
        },
    }
}  # fmt: skip


@dataclass(frozen=True)
class TranscriptionForm:
    audio: bytes
    model: str
    language: str
    prompt: str
    response_format: ResponseFormat
    granularities: frozenset[str]
    stream: bool


async def read_form(request: Request) -> TranscriptionForm:
    """The checked form of a transcription or translation request (400 naming what is wrong;
    413 from speech_http.uploads while the body streams in)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HttpError(
            400,
            "send the audio as multipart/form-data with a 'file' part",
            code="invalid_content_type",
        )
    try:
        form = await request.form(max_files=1, max_fields=32)
    except HTTPException as error:  # starlette's multipart parser refused the body
        raise HttpError(
            400, f"malformed multipart body: {error.detail}", code="invalid_body"
        ) from None
    try:
        return await _checked(form)
    finally:
        await form.close()


async def _checked(form: FormData) -> TranscriptionForm:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HttpError(
            400,
            "the form has no 'file' part holding the audio",
            code="missing_file",
            param="file",
        )
    audio = await upload.read()
    if not audio:
        raise HttpError(400, "the uploaded file is empty", code="empty_file", param="file")
    response_format = _text(form, "response_format") or "json"
    if response_format not in _FORMATS:
        raise HttpError(
            400,
            f"response_format {response_format!r} is not one of {', '.join(_FORMATS)}",
            code="invalid_value",
            param="response_format",
        )
    granularities = frozenset(
        str(v) for v in [*form.getlist("timestamp_granularities[]"),
                         *form.getlist("timestamp_granularities")]
    )  # fmt: skip
    unknown = sorted(granularities - set(_GRANULARITIES))
    if unknown:
        raise HttpError(
            400,
            f"timestamp_granularities {unknown} unknown; use word and/or segment",
            code="invalid_value",
            param="timestamp_granularities",
        )
    if granularities and response_format != "verbose_json":
        raise HttpError(
            400,
            "timestamp_granularities needs response_format=verbose_json",
            code="invalid_value",
            param="timestamp_granularities",
        )
    stream = _text(form, "stream").lower() in ("true", "1")
    return TranscriptionForm(
        audio=audio,
        model=_text(form, "model"),
        language=_text(form, "language"),
        prompt=_text(form, "prompt"),
        response_format=cast(ResponseFormat, response_format),
        granularities=granularities,
        stream=stream,
    )


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def choose_model(core: UnaryTranscription, requested: str, *, multilingual: bool) -> str:
    """Our model for a request: OpenAI's names mean the default model, or the first
    multilingual one loaded when the task needs one (translation, a language other than
    English) and the default is English-only."""
    name = stt_model(requested)
    if name or requested.strip() not in (*STT_ALIASES, ""):
        return name
    transcriber = core.transcriber
    default = transcriber.model()
    if multilingual and not default.multilingual:
        others = [m.name for m in transcriber.models() if m.multilingual]
        return others[0] if others else default.name
    return default.name


async def transcribe(
    core: UnaryTranscription,
    form: TranscriptionForm,
    *,
    task: str,
    caller: str,
    time_remaining: TimeRemaining,
) -> Response:
    core.require_ready()
    needs_multilingual = task == "translate" or form.language.lower() not in ("", "en")
    config = stt_pb2.RecognitionConfig(
        model=choose_model(core, form.model, multilingual=needs_multilingual),
        language_code=form.language,
        initial_prompt=form.prompt,
        enable_word_time_offsets="word" in form.granularities,
        task=task,
    )
    request = stt_pb2.TranscribeRequest(config=config, audio=form.audio)
    response = await core.transcribe(request, caller=caller, time_remaining=time_remaining)
    if form.stream:
        # Events start once the transcript is ready, so a refusal (bad audio, a busy
        # server) is still an HTTP status, not an event.
        return StreamingResponse(_events(response), media_type="text/event-stream")
    return render(response, form.response_format, task, set(form.granularities))


async def _events(response: stt_pb2.TranscribeResponse) -> AsyncIterator[str]:
    for segment in response.segments:
        delta = {"type": "transcript.text.delta", "delta": segment.text, "logprobs": None}
        yield f"data: {json.dumps(delta)}\n\n"
    done = {"type": "transcript.text.done", "text": response.text, "usage": usage(response)}
    yield f"data: {json.dumps(done)}\n\n"
