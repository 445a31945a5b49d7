"""The server-wide memory budget (server.memory_budget_mb): a Transcribe call that would
hold more than is free is refused before it decodes, and the server goes on serving."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from speech_platform.budget import MIB, MemoryBudget
from speech_platform.errors import ResourceExhausted
from stt_service.audio import decoding_bytes, known_seconds
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow


def test_a_reservation_over_the_limit_is_refused_and_nothing_is_held():
    budget = MemoryBudget(limit_bytes=10 * MIB)
    with budget.reserve(6 * MIB, "the first call"):
        with pytest.raises(ResourceExhausted, match=r"needs about 5\.0 MiB .* 4\.0 MiB free"):
            budget.reserve(5 * MIB, "a second call").__enter__()
        assert budget.in_use == 6 * MIB
    assert budget.in_use == 0
    with budget.reserve(1 * MIB, "a call") as held, pytest.raises(ResourceExhausted):
        held.resize(11 * MIB)  # growing past the limit is refused too
    assert budget.in_use == 0


def test_the_bound_is_exact_for_raw_pcm_and_capped_for_containers():
    second = bytes(32000)  # 1 s of 16 kHz LINEAR16
    raw = decoding_bytes(
        second,
        encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=16000,
        audio_channel_count=1,
        max_seconds=600,
    )
    assert raw == 32000 + 16000 * 4 * 2 + 16000 * 4
    huge = decoding_bytes(
        bytes(30 * MIB), encoding=0, sample_rate_hertz=0, audio_channel_count=0, max_seconds=600
    )
    assert huge == 30 * MIB + 600 * 16000 * 4 * 4


@pytest.fixture(scope="module")
async def tight_server() -> AsyncIterator[RunningServer]:
    settings = server_settings(["stt"])
    settings.server.memory_budget_mb = 1
    async with running_server(settings) as server:
        yield server


async def test_a_call_over_the_budget_is_refused_and_others_are_served(tight_server, speech_clips):
    long_wav = speech_clips[0]  # 7.1 s of LibriVox as WAV: ~2.9 MB bound, over 1 MiB
    command = speech_clips[5]  # "go forward ten meters", raw 16 kHz: ~0.6 MB, fits
    async with tight_server.channel() as channel:
        stt = stt_pb2_grpc.SpeechToTextStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stt.Transcribe(
                stt_pb2.TranscribeRequest(
                    audio=long_wav.payload, config=stt_pb2.RecognitionConfig(skip_cache=True)
                )
            )
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "memory budget" in (refused.value.details() or "")
        served = await stt.Transcribe(
            stt_pb2.TranscribeRequest(
                audio=command.payload,
                config=stt_pb2.RecognitionConfig(
                    encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
                    sample_rate_hertz=16000,
                    skip_cache=True,
                ),
            )
        )
        assert "forward" in served.text.lower()
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _wav_header(
    seconds: float, *, channels: int = 1, rate: int = 16000, body: bytes = b""
) -> bytes:
    """A 16-bit PCM WAV whose data chunk declares ``seconds`` (only ``body`` follows)."""
    size = int(seconds * rate * channels * 2)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", size) + body
    )


def test_a_wav_header_tells_the_length_before_decoding():
    def seconds(data: bytes, each_channel: bool = False) -> float | None:
        return known_seconds(
            data, encoding=0, sample_rate_hertz=0, audio_channel_count=0, each_channel=each_channel
        )

    assert seconds(_wav_header(12.5)) == pytest.approx(12.5)
    assert seconds(_wav_header(3.0, channels=2)) == pytest.approx(3.0)
    assert seconds(_wav_header(3.0, channels=2), each_channel=True) == pytest.approx(6.0)
    streamed = _wav_header(1.0)[:40] + struct.pack("<I", 0xFFFFFFFF)  # length unknown
    assert seconds(streamed) is None
    many_chunks = _wav_header(1.0)[:12] + (b"junk" + struct.pack("<I", 0)) * 100
    assert seconds(many_chunks) is None  # not walked to its end
    assert seconds(b"fLaC" + bytes(60)) is None
    raw = known_seconds(
        bytes(64000),
        encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=16000,
        audio_channel_count=2,
        each_channel=True,
    )
    assert raw == pytest.approx(2.0)  # 1 s of stereo, each channel decoded apart


async def test_audio_declared_too_long_is_refused_before_the_budget(tight_server):
    """A WAV whose header declares more than stt.max_audio_seconds is refused for its
    length, not for the memory its decoding would need (nothing is reserved)."""
    declared = _wav_header(700.0, body=bytes(32000))
    async with tight_server.channel() as channel:
        stt = stt_pb2_grpc.SpeechToTextStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stt.Transcribe(
                stt_pb2.TranscribeRequest(
                    audio=declared, config=stt_pb2.RecognitionConfig(skip_cache=True)
                )
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "700.0 s long" in (refused.value.details() or "")
    assert "at most 600 s" in (refused.value.details() or "")
