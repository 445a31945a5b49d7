"""``POST /v1/audio/speech`` on the Synthesizer's streaming core.

The text goes to ``Synthesizer.stream`` (the core gRPC StreamingSynthesize uses: the same
sentence splitting, batchers, fallback and cache door) and the audio leaves sentence by
sentence as it is rendered, as one valid stream of the asked format: mp3, opus (Ogg),
flac, wav (its header says "size unknown") and pcm (16-bit little-endian at 24 kHz, as
OpenAI sends) come encoded by the core; aac (ADTS) is encoded here from the core's PCM.
``stream_format=sse`` sends the same bytes base64 in ``speech.audio.delta`` events, then
``speech.audio.done``.

``instructions`` (voice direction for OpenAI's gpt-4o-mini-tts) has no counterpart in
Piper or Kokoro: it is ignored, and the response says so in ``X-Speech-Note``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Literal

import numpy as np
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from speech.v1 import tts_pb2
from speech_http.aliases import speech_choice
from speech_platform.cache import CacheDoor
from tts_service.audio_encoding import AAC_ADTS, Encoding, streaming_encoder
from tts_service.convert import synthesis_request
from tts_service.results import SynthesisChunk, SynthesisResult

if TYPE_CHECKING:
    from tts_service.synthesizer import Synthesizer

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

#: OpenAI's pcm: 16-bit little-endian mono at 24 kHz.
PCM_RATE = 24_000

#: response_format -> (what the core encodes, at which rate: 0 = the voice's own).
_CORE_OUTPUT: dict[str, tuple[Encoding, int]] = {
    "mp3": (Encoding.MP3, 0),
    "opus": (Encoding.OGG_OPUS, 0),
    "flac": (Encoding.FLAC, 0),
    "wav": (Encoding.WAV, 0),
    "pcm": (Encoding.LINEAR16, PCM_RATE),
    "aac": (Encoding.LINEAR16, 0),  # encoded here (speech.v1 has no AAC)
}

MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

INSTRUCTIONS_NOTE = "instructions are not supported by these voices and were ignored"


class SpeechBody(BaseModel):
    """OpenAI's speech request."""

    model: str = Field(description="tts-1 (Piper), tts-1-hd or gpt-4o-mini-tts (Kokoro)")
    input: str = Field(description="the text to speak")
    voice: str | dict[str, str] = Field(
        description="an OpenAI voice (alloy, ash, coral, ...) or one GET /v1/audio/voices "
        "lists; {'id': name} is accepted too"
    )
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, description="ignored (see X-Speech-Note)")
    stream_format: Literal["audio", "sse"] = "audio"

    def voice_name(self) -> str:
        if isinstance(self.voice, dict):
            return str(self.voice.get("id", ""))
        return self.voice


async def speak(
    synthesizer: Synthesizer,
    door: CacheDoor[SynthesisResult],
    body: SpeechBody,
    caller: str,
    timeout_s: float | None = None,
) -> StreamingResponse:
    choice = speech_choice(body.model, body.voice_name())
    encoding, rate = _CORE_OUTPUT[body.response_format]
    request = synthesis_request(
        body.input,
        choice.voice,
        int(choice.tier),
        tts_pb2.AudioConfig(
            encoding=int(encoding),  # type: ignore[arg-type]
            sample_rate_hertz=rate,
            speaking_rate=body.speed,
        ),
        timeout_s=timeout_s,
        caller=caller,
    )
    chunks = synthesizer.stream(request, door)
    # The first sentence is awaited before the status line goes out, so a refusal
    # (unknown voice, empty text, a full queue) is an HTTP error, not a cut stream.
    try:
        first = await anext(chunks)
    except BaseException:
        await chunks.aclose()
        raise
    audio = _audio(first, chunks, body.response_format)
    headers = {"X-Speech-Note": INSTRUCTIONS_NOTE} if body.instructions else {}
    headers |= {"X-Speech-Voice": first.voice, "X-Speech-Engine": first.engine}
    if body.stream_format == "sse":
        return StreamingResponse(_events(audio), media_type="text/event-stream", headers=headers)
    return StreamingResponse(audio, media_type=MEDIA_TYPES[body.response_format], headers=headers)


async def _audio(
    first: SynthesisChunk,
    rest: AsyncGenerator[SynthesisChunk, None],
    response_format: str,
) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(rest):
        if response_format != "aac":
            yield first.audio
            async for chunk in rest:
                yield chunk.audio
            return
        encoder = streaming_encoder(AAC_ADTS, first.sample_rate)
        yield await asyncio.to_thread(encoder.encode, _pcm(first.audio))
        async for chunk in rest:
            yield await asyncio.to_thread(encoder.encode, _pcm(chunk.audio))
        yield await asyncio.to_thread(encoder.finish)


def _pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2")


async def _events(audio: AsyncIterator[bytes]) -> AsyncIterator[str]:
    async for data in audio:
        if data:
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
            yield f"data: {json.dumps(event)}\n\n"
    done = {
        "type": "speech.audio.done",
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
    }
    yield f"data: {json.dumps(done)}\n\n"
