"""Streams have limits of their own: how many are open (in all and per caller), and how
fast a stream's audio is taken in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from speech.v1 import stt_pb2, stt_pb2_grpc
from stt_service.streaming import rpc
from tests.stt.streaming.speech import streaming_config
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

TOKENS = ("alice-token", "bob-token")


@pytest.fixture(scope="module")
async def capped_server() -> AsyncIterator[RunningServer]:
    settings = server_settings(["stt"])
    settings.server.auth_tokens = list(TOKENS)
    settings.stt.max_concurrent_streams = 3
    settings.stt.max_streams_per_caller = 2
    async with running_server(settings) as server:
        yield server


class OpenStream:
    """A stream that sends its config and some silence, then stays open until closed."""

    def __init__(self, channel: grpc.aio.Channel, token: str, *, stay_open: bool = True) -> None:
        self.release = asyncio.Event()
        # An attempt expected to be refused sends only its config: gRPC's client reports a
        # write still under way when the server ends the stream as an internal error.
        requests = self._requests() if stay_open else iter([streaming_config()])
        self.call = stt_pb2_grpc.SpeechToTextStub(channel).StreamingTranscribe(
            requests, metadata=(("authorization", f"Bearer {token}"),)
        )

    async def _requests(self) -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
        yield streaming_config()
        yield stt_pb2.StreamingTranscribeRequest(audio_content=bytes(3200))
        await self.release.wait()

    async def status(self) -> tuple[grpc.StatusCode, str]:
        try:
            async for _ in self.call:
                pass
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or ""
        return grpc.StatusCode.OK, ""


async def _until_open(server: RunningServer, count: int) -> None:
    async with asyncio.timeout(30):
        while rpc.STT_STREAMS_ACTIVE._value.get() < count:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.01)


async def test_streams_are_capped_per_caller_and_in_all(capped_server):
    base = rpc.STT_STREAMS_ACTIVE._value.get()
    async with capped_server.channel() as channel:
        alice = [OpenStream(channel, TOKENS[0]) for _ in range(2)]
        await _until_open(capped_server, base + 2)
        # Alice's third stream: over her own share.
        code, message = await OpenStream(channel, TOKENS[0], stay_open=False).status()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, message
        assert "max_streams_per_caller" in message
        # Bob still gets one (3 in all), then the server is full for everyone.
        bob = OpenStream(channel, TOKENS[1])
        await _until_open(capped_server, base + 3)
        code, message = await OpenStream(channel, TOKENS[1], stay_open=False).status()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, message
        assert "max_concurrent_streams" in message
        # Closing streams frees their places.
        for stream in [*alice, bob]:
            stream.release.set()
        for stream in [*alice, bob]:
            assert (await stream.status())[0] == grpc.StatusCode.OK
        assert (await OpenStream(channel, TOKENS[0], stay_open=False).status())[0] == (
            grpc.StatusCode.OK
        )


async def test_audio_faster_than_the_allowed_pace_is_held_back(monkeypatch):
    held: list[float] = []

    async def record(seconds: float) -> None:
        held.append(seconds)

    monkeypatch.setattr(rpc.asyncio, "sleep", record)
    loop = asyncio.get_running_loop()
    pace = rpc._Pace(loop, factor=2.0, burst_s=10.0)
    await pace.hold(9.0)  # within the burst: taken at once
    assert held == []
    # 30 s of audio at once: 20 s over the burst, let in at twice real time.
    await pace.hold(30.0)
    assert len(held) == 1 and held[0] == pytest.approx(10.0, abs=0.05)
    unlimited = rpc._Pace(loop, factor=0.0, burst_s=0.0)
    await unlimited.hold(1000.0)
    assert len(held) == 1
