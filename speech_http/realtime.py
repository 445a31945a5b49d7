"""Realtime transcription over WebSocket, in OpenAI's Realtime transcription events.

``/v1/realtime?intent=transcription`` runs on the StreamingRecognizer (stt_service.streaming)
that gRPC StreamingTranscribe uses: the same VAD endpointing, per-model batchers and stream
limits (a caller's WebSocket streams count against the same per-caller cap).

Client events: ``transcription_session.update`` (``input_audio_format`` pcm16 at 24 kHz
or g711_ulaw; ``input_audio_transcription`` model, language, prompt;
``turn_detection.silence_duration_ms``), ``input_audio_buffer.append`` (base64 audio),
``input_audio_buffer.commit`` (ends the utterance now) and ``input_audio_buffer.clear``.

Server events: ``transcription_session.created`` / ``.updated``; for each utterance the
server's VAD ends, ``input_audio_buffer.committed``, then
``conversation.item.input_audio_transcription.delta`` (the whole text, as whisper-1 sends
it) and ``.completed``; ``error`` for a refused event (the socket stays open) or a failed
stream (then it closes).

A commit ends the recognizer's stream, so what is buffered is transcribed at once; the
next append opens a new one with the same session settings.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from speech.v1 import common_pb2, stt_pb2
from speech_http.aliases import stt_model
from speech_platform.errors import grpc_status_for

if TYPE_CHECKING:
    from stt_service.streaming import StreamingRecognizer

#: input_audio_format -> (encoding, sample rate): OpenAI's pcm16 is 24 kHz mono.
_FORMATS = {
    "pcm16": (common_pb2.AUDIO_ENCODING_LINEAR16, 24_000),
    "g711_ulaw": (common_pb2.AUDIO_ENCODING_MULAW, 8_000),
}


def _event_id() -> str:
    return "event_" + secrets.token_hex(8)


@dataclass
class SessionSettings:
    """What ``transcription_session.update`` has set so far."""

    input_audio_format: str = "pcm16"
    model: str = ""
    language: str = ""
    prompt: str = ""
    silence_duration_ms: int = 0

    def update(self, session: dict[str, Any]) -> None:
        """Applies a session object; raises ValueError naming a bad field."""
        audio_format = session.get("input_audio_format", self.input_audio_format)
        if audio_format not in _FORMATS:
            raise ValueError(
                f"input_audio_format {audio_format!r} is not supported; use {' or '.join(_FORMATS)}"
            )
        self.input_audio_format = audio_format
        transcription = session.get("input_audio_transcription") or {}
        self.model = stt_model(str(transcription.get("model", self.model) or ""))
        self.language = str(transcription.get("language", self.language) or "")
        self.prompt = str(transcription.get("prompt", self.prompt) or "")
        detection = session.get("turn_detection") or {}
        silence = detection.get("silence_duration_ms")
        if silence is not None:
            # Only a server hosting STT gets here: its libraries are loaded already.
            from stt_service.streaming.config import (
                MAX_ENDPOINT_SILENCE_MS,
                MIN_ENDPOINT_SILENCE_MS,
            )

            # OpenAI's value is clamped into the range the recognizer takes, not refused.
            self.silence_duration_ms = min(
                max(int(silence), MIN_ENDPOINT_SILENCE_MS), MAX_ENDPOINT_SILENCE_MS
            )

    def describe(self) -> dict[str, Any]:
        return {
            "object": "realtime.transcription_session",
            "input_audio_format": self.input_audio_format,
            "input_audio_transcription": {
                "model": self.model or "default",
                "language": self.language,
                "prompt": self.prompt,
            },
            "turn_detection": {
                "type": "server_vad",
                "silence_duration_ms": self.silence_duration_ms or None,
            },
        }

    def first_request(self) -> stt_pb2.StreamingTranscribeRequest:
        encoding, rate = _FORMATS[self.input_audio_format]
        return stt_pb2.StreamingTranscribeRequest(
            streaming_config=stt_pb2.StreamingRecognitionConfig(
                config=stt_pb2.RecognitionConfig(
                    encoding=encoding,
                    sample_rate_hertz=rate,
                    model=self.model,
                    language_code=self.language,
                    initial_prompt=self.prompt,
                ),
                interim_results=False,
                endpoint_silence_ms=self.silence_duration_ms,
            )
        )


@dataclass
class _Stream:
    """One recognizer stream: its audio queue and the task turning results into events."""

    audio: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class RealtimeSession:
    """One WebSocket connection."""

    def __init__(self, socket: WebSocket, recognizer: StreamingRecognizer, caller: str):
        self.socket = socket
        self.recognizer = recognizer
        self.caller = caller
        self.settings = SessionSettings()
        self._stream: _Stream | None = None
        self._items = 0
        self._previous_item: str | None = None
        self._send_lock = asyncio.Lock()
        self._failed = asyncio.Event()

    async def send(self, event: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.socket.send_text(json.dumps({"event_id": _event_id(), **event}))

    async def error(self, message: str, code: str, error_type: str = "invalid_request_error",
                    event_id: str | None = None) -> None:  # fmt: skip
        await self.send(
            {
                "type": "error",
                "error": {"type": error_type, "code": code, "message": message,
                          "param": None, "event_id": event_id},
            }
        )  # fmt: skip

    async def run(self) -> None:
        await self.send({"type": "transcription_session.created",
                         "session": self.settings.describe()})  # fmt: skip
        try:
            while not self._failed.is_set():
                receive = asyncio.ensure_future(self.socket.receive_text())
                failed = asyncio.ensure_future(self._failed.wait())
                done, _ = await asyncio.wait({receive, failed}, return_when=asyncio.FIRST_COMPLETED)
                failed.cancel()
                if receive not in done:
                    receive.cancel()
                    break
                await self._handle(receive.result())
        except WebSocketDisconnect:
            pass
        finally:
            await self._end_stream(wait=False)

    async def _handle(self, text: str) -> None:
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            await self.error("the message is not JSON", "invalid_json")
            return
        if not isinstance(event, dict):
            await self.error("an event must be a JSON object", "invalid_event")
            return
        kind = event.get("type")
        event_id = event.get("event_id")
        if kind == "transcription_session.update":
            if self._stream is not None:
                await self.error("update the session before sending audio, or after a "
                                 "commit", "session_busy", event_id=event_id)  # fmt: skip
                return
            try:
                self.settings.update(event.get("session") or {})
            except (ValueError, TypeError) as error:
                await self.error(str(error), "invalid_value", event_id=event_id)
                return
            await self.send({"type": "transcription_session.updated",
                             "session": self.settings.describe()})  # fmt: skip
        elif kind == "input_audio_buffer.append":
            try:
                audio = base64.b64decode(str(event.get("audio", "")), validate=True)
            except (binascii.Error, ValueError):
                await self.error("audio must be base64", "invalid_audio", event_id=event_id)
                return
            if audio:
                await self._open_stream().audio.put(audio)
        elif kind == "input_audio_buffer.commit":
            if self._stream is None:
                await self.error("the input audio buffer is empty: append audio first",
                                 "input_audio_buffer_commit_empty", event_id=event_id)  # fmt: skip
                return
            await self._end_stream(wait=True)
        elif kind == "input_audio_buffer.clear":
            await self._end_stream(wait=False)
            await self.send({"type": "input_audio_buffer.cleared"})
        else:
            await self.error(f"unknown event type {kind!r}", "unknown_event", event_id=event_id)

    def _open_stream(self) -> _Stream:
        if self._stream is None:
            stream = _Stream()
            stream.task = asyncio.create_task(self._results(stream))
            self._stream = stream
        return self._stream

    async def _end_stream(self, *, wait: bool) -> None:
        stream, self._stream = self._stream, None
        if stream is None or stream.task is None:
            return
        if wait:
            await stream.audio.put(None)
            await asyncio.shield(stream.task)
        else:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stream.task

    async def _requests(self, stream: _Stream) -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
        yield self.settings.first_request()
        while (audio := await stream.audio.get()) is not None:
            yield stt_pb2.StreamingTranscribeRequest(audio_content=audio)

    async def _results(self, stream: _Stream) -> None:
        try:
            async for result in self.recognizer.serve(self._requests(stream), caller=self.caller):
                if result.is_final:
                    await self._completed(result.text.strip())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            code, message, _ = grpc_status_for(error)
            with contextlib.suppress(Exception):
                await self.error(message, code.name.lower(), error_type="server_error"
                                 if code.name in ("INTERNAL", "UNAVAILABLE")
                                 else "invalid_request_error")  # fmt: skip
            self._failed.set()

    async def _completed(self, transcript: str) -> None:
        self._items += 1
        item = f"item_{self._items:06d}"
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": self._previous_item,
                "item_id": item,
            }
        )
        self._previous_item = item
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item,
                "content_index": 0,
                "delta": transcript,
            }
        )
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": transcript,
            }
        )
