"""Bad configs and stream limits end a stream with an exact status code, what was heard
before a limit is still finalised, and the server keeps serving afterwards.

Codes: INVALID_ARGUMENT for a malformed stream (config not first, a second config, no
sample rate, a container encoding, settings out of range, a chunk over the size limit),
OUT_OF_RANGE when the audio passes the maximum stream duration, DEADLINE_EXCEEDED when no
audio arrives for the idle timeout, NOT_FOUND for a model the server does not serve."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.streaming.speech import (
    LINEAR16,
    collect,
    join_clips,
    microphone,
    normalise,
    streaming_config,
    word_error_rate,
)
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

MAX_STREAM_S = 6.0
IDLE_S = 1.0
MAX_CHUNK = 4096


@pytest.fixture(scope="module")
async def limited_server() -> AsyncIterator[RunningServer]:
    settings = server_settings(["stt"])
    settings.stt.max_stream_seconds = MAX_STREAM_S
    settings.stt.stream_idle_timeout_s = IDLE_S
    settings.stt.max_stream_chunk_bytes = MAX_CHUNK
    async with running_server(settings) as server:
        yield server


def audio(data: bytes) -> stt_pb2.StreamingTranscribeRequest:
    return stt_pb2.StreamingTranscribeRequest(audio_content=data)


async def status_of(
    server: RunningServer, requests: list[stt_pb2.StreamingTranscribeRequest]
) -> tuple[grpc.StatusCode, str, list[stt_pb2.StreamingTranscribeResponse]]:
    """The stream's final status, its message, and the responses before it."""

    async def send() -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
        for request in requests:
            yield request

    received: list[stt_pb2.StreamingTranscribeResponse] = []
    async with server.channel() as channel:
        call = stt_pb2_grpc.SpeechToTextStub(channel).StreamingTranscribe(send())
        try:
            async for response in call:
                received.append(response)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or "", received
    return grpc.StatusCode.OK, "", received


def config_with(**fields: Any) -> stt_pb2.StreamingTranscribeRequest:
    """A valid LINEAR16 16 kHz config with some fields changed."""
    recognition: dict[str, Any] = {
        "encoding": LINEAR16,
        "sample_rate_hertz": 16000,
        "language_code": "en",
    }
    streaming: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("interim_interval_ms", "endpoint_silence_ms", "interim_results"):
            streaming[key] = value
        else:
            recognition[key] = value
    return stt_pb2.StreamingTranscribeRequest(
        streaming_config=stt_pb2.StreamingRecognitionConfig(
            config=stt_pb2.RecognitionConfig(**recognition), **streaming
        )
    )


SILENCE = bytes(3200)  # 100 ms


@pytest.mark.parametrize(
    ("requests", "code", "words"),
    [
        ([audio(SILENCE)], grpc.StatusCode.INVALID_ARGUMENT, "first"),
        ([stt_pb2.StreamingTranscribeRequest()], grpc.StatusCode.INVALID_ARGUMENT, "first"),
        (
            [config_with(), audio(SILENCE), config_with()],
            grpc.StatusCode.INVALID_ARGUMENT,
            "only be sent once",
        ),
        ([config_with(sample_rate_hertz=0)], grpc.StatusCode.INVALID_ARGUMENT, "sample_rate"),
        (
            [config_with(encoding=common_pb2.AUDIO_ENCODING_WAV)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "cannot be streamed",
        ),
        (
            [config_with(encoding=common_pb2.AUDIO_ENCODING_UNSPECIFIED)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "cannot be streamed",
        ),
        ([config_with(sample_rate_hertz=1000)], grpc.StatusCode.INVALID_ARGUMENT, "4000"),
        ([config_with(interim_interval_ms=20)], grpc.StatusCode.INVALID_ARGUMENT, "interim"),
        ([config_with(endpoint_silence_ms=-5)], grpc.StatusCode.INVALID_ARGUMENT, "endpoint"),
        ([config_with(beam_size=11)], grpc.StatusCode.INVALID_ARGUMENT, "beam_size"),
        ([config_with(language_code="de")], grpc.StatusCode.INVALID_ARGUMENT, "English"),
        ([config_with(model="large-v9")], grpc.StatusCode.NOT_FOUND, "large-v9"),
        (
            [config_with(), audio(bytes(MAX_CHUNK + 1))],
            grpc.StatusCode.INVALID_ARGUMENT,
            f"limit of {MAX_CHUNK} bytes",
        ),
        ([], grpc.StatusCode.INVALID_ARGUMENT, "before its streaming_config"),
    ],
    ids=[
        "audio-first",
        "empty-first-message",
        "second-config",
        "no-sample-rate",
        "container-encoding",
        "unspecified-encoding",
        "rate-out-of-range",
        "interim-interval-too-short",
        "negative-endpoint",
        "beam-out-of-range",
        "language-of-english-model",
        "unknown-model",
        "chunk-too-large",
        "no-messages",
    ],
)
async def test_a_malformed_stream_gets_an_exact_status(
    limited_server: RunningServer,
    requests: list[stt_pb2.StreamingTranscribeRequest],
    code: grpc.StatusCode,
    words: str,
) -> None:
    status, message, received = await status_of(limited_server, requests)
    assert status == code, message
    assert words in message
    assert received == []


async def test_a_chunk_at_the_size_limit_is_accepted(limited_server: RunningServer) -> None:
    requests = [config_with(), *[audio(bytes(MAX_CHUNK)) for _ in range(4)]]
    status, message, received = await status_of(limited_server, requests)
    assert status == grpc.StatusCode.OK, message
    assert received == []


async def test_the_duration_limit_finalises_what_came_before_it(
    limited_server: RunningServer, librivox_pcm: list
) -> None:
    # "he might even have been made amiable himself" (3.3 s), a pause, then a sentence
    # that the 6 s limit cuts off: the first is finalised, the stream ends OUT_OF_RANGE.
    speech = join_clips([librivox_pcm[4], librivox_pcm[0]], pause_s=1.0, lead_s=0.3)
    assert speech.duration_s > MAX_STREAM_S + 2
    data = speech.linear16()
    requests = [
        config_with(interim_results=False),
        *[audio(data[i : i + 3200]) for i in range(0, len(data), 3200)],
    ]
    status, message, received = await status_of(limited_server, requests)
    assert status == grpc.StatusCode.OUT_OF_RANGE, message
    assert f"{MAX_STREAM_S:g} s" in message
    assert received and all(r.is_final for r in received)
    assert word_error_rate([speech.references[0]], [received[0].text]) <= 0.2
    # Nothing past the limit was transcribed.
    assert all(r.end_seconds <= MAX_STREAM_S + 1e-3 for r in received)


async def test_an_idle_stream_is_finalised_then_ends_with_deadline_exceeded(
    limited_server: RunningServer, librivox_pcm: list
) -> None:
    pcm, _ = librivox_pcm[4]  # "he might even have been made amiable himself", no pause after
    data = pcm.astype("<i2").tobytes()
    done = asyncio.Event()

    async def then_silence() -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
        yield config_with(interim_results=False)
        for offset in range(0, len(data), 3200):
            yield audio(data[offset : offset + 3200])
        await done.wait()  # a client that stops sending but keeps the stream open

    received = []
    async with limited_server.channel() as channel:
        call = stt_pb2_grpc.SpeechToTextStub(channel).StreamingTranscribe(then_silence())
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for response in call:
                received.append(response)
        done.set()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no audio arrived" in (raised.value.details() or "")
    (final,) = received
    assert final.is_final and "amiable himself" in normalise(final.text)


async def test_the_server_keeps_serving_after_failed_streams(
    limited_server: RunningServer, librivox_pcm: list
) -> None:
    failures = [
        status_of(limited_server, [audio(SILENCE)]),
        status_of(limited_server, [config_with(), audio(bytes(MAX_CHUNK * 2))]),
    ]
    statuses = await asyncio.gather(*failures)
    assert [s for s, _, _ in statuses] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    speech = join_clips([librivox_pcm[4]], pause_s=1.0)
    async with limited_server.channel() as channel:
        received = await collect(
            channel,
            microphone(
                streaming_config(interim_results=False),
                speech.linear16(),
                bytes_per_second=32000 * 4,
                chunk_bytes=3200,
            ),
        )
    (final,) = [r.response for r in received]
    assert final.is_final
    assert word_error_rate(speech.references, [final.text]) <= 0.2
