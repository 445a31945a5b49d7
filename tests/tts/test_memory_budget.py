"""Synthesis under the server's memory budget: the audio a request asks for is estimated
from its text (tts_service/limits.py) and reserved before anything is phonemized, so a
request that would not fit is refused at once, naming the limit, and others are served."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from speech.v1 import tts_pb2, tts_pb2_grpc
from speech_platform.budget import MIB
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings
from tts_service.limits import estimated_output_bytes, estimated_output_seconds

pytestmark = pytest.mark.slow

LONG = "The committee will meet again next week to review the plan. " * 20


@pytest.fixture(scope="module")
async def tight_server() -> AsyncIterator[RunningServer]:
    settings = server_settings(["tts"])
    settings.tts.engines = ["piper"]
    settings.server.memory_budget_mb = 1
    async with running_server(settings) as server:
        yield server


async def test_a_text_whose_audio_would_not_fit_is_refused_and_others_are_served(tight_server):
    assert estimated_output_bytes(estimated_output_seconds(LONG, 1.0), 22050) > MIB
    async with tight_server.channel() as channel:
        tts = tts_pb2_grpc.TextToSpeechStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await tts.Synthesize(tts_pb2.SynthesizeRequest(text=LONG, skip_cache=True))
        with pytest.raises(grpc.aio.AioRpcError) as stream:
            request = tts_pb2.StreamingSynthesizeRequest(text=LONG, skip_cache=True)
            async for _ in tts.StreamingSynthesize(request):
                pass
        for refused in (unary, stream):
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "server.memory_budget_mb" in (refused.value.details() or "")
        served = await tts.Synthesize(
            tts_pb2.SynthesizeRequest(text="Thank you.", skip_cache=True), timeout=60
        )
        assert len(served.audio) > 10_000
    budget = tight_server.server.context.memory
    assert budget.in_use == 0  # every reservation released, refused or served
