"""Overload is a normal day: far more Transcribe calls than the server can serve before
their deadline get a fast RESOURCE_EXHAUSTED with a retry delay, the rest are served, and
health keeps answering. Loopback only; one bounded burst."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow

CALLS = 200
DEADLINE_S = 8.0


@pytest.fixture(scope="module")
async def fresh_server() -> AsyncIterator[RunningServer]:
    """A server that has served nothing yet (admission knows only its warm-up)."""
    async with running_server(server_settings(["stt"])) as server:
        yield server


async def test_a_burst_beyond_capacity_is_refused_at_once_not_left_to_time_out(
    fresh_server, speech_clips
):
    command = speech_clips[5]  # "go forward ten meters", 2.8 s
    request = stt_pb2.TranscribeRequest(
        audio=command.payload,
        config=stt_pb2.RecognitionConfig(
            encoding=common_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, skip_cache=True
        ),
    )
    async with fresh_server.channel() as channel:
        stt = stt_pb2_grpc.SpeechToTextStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def one() -> tuple[grpc.StatusCode, bool]:
            call = stt.Transcribe(request, timeout=DEADLINE_S)
            try:
                response = await call
            except grpc.aio.AioRpcError as error:
                trailing = dict(error.trailing_metadata() or ())
                return error.code(), "retry-after-ms" in trailing
            return grpc.StatusCode.OK, "forward" in response.text.lower()

        calls = [asyncio.ensure_future(one()) for _ in range(CALLS)]
        # Health answers while the burst is queued and computing.
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        outcomes = await asyncio.gather(*calls)
    codes = Counter(code for code, _ in outcomes)
    print("burst outcomes:", dict(codes))
    served, refused = codes[grpc.StatusCode.OK], codes[grpc.StatusCode.RESOURCE_EXHAUSTED]
    timed_out = codes[grpc.StatusCode.DEADLINE_EXCEEDED]
    assert served + refused + timed_out == CALLS  # no other code, nothing unanswered
    assert served >= 10 and all(ok for code, ok in outcomes if code == grpc.StatusCode.OK)
    assert refused >= CALLS // 2  # most of what cannot make it is told so at once...
    assert all(hint for code, hint in outcomes if code == grpc.StatusCode.RESOURCE_EXHAUSTED)
    # ...and few wait their whole deadline for nothing (the estimate is not exact).
    assert timed_out <= 0.05 * CALLS
