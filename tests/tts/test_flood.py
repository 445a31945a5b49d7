"""A flooding caller beside a polite one, through the real server (TTS, two tokens): the
polite caller is always served, and ahead of the flood's queued work; the flood is told
RESOURCE_EXHAUSTED for what cannot finish in its deadline; health answers throughout.

Timings are the benchmark's (python -m tools.bench overload --mode flood); what is asserted
here is who got answered, with which code, and in which order. Loopback only, bounded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech.v1 import tts_pb2, tts_pb2_grpc
from tests.support.server import RunningServer, running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow

FLOODERS = 40
FLOOD_DEADLINE_S = 6.0
FLOOD_TEXT = (
    "Our quarterly review found that the platform handled twice the expected traffic. "
    "There was no outage and only a small rise in latency during the evening peak. "
    "The team will publish the full report next week. "
)
POLITE_TEXTS = ["Thank you.", "Good morning.", "Yes, please.", "See you soon."]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[RunningServer]:
    settings = server_settings(["tts"])
    settings.cache.backend = "off"
    settings.server.auth_tokens = ["flood-token", "polite-token"]
    async with running_server(settings) as running:
        yield running


async def test_a_flood_is_refused_while_a_polite_caller_is_served_first(server) -> None:
    piper = server.server.context.services["tts"].synthesizer.engines["piper"]._batcher
    finished: list[str] = []  # who finished, in order ("flood" or "polite")
    async with server.channel() as channel:
        tts = tts_pb2_grpc.TextToSpeechStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def flood() -> grpc.StatusCode:
            request = tts_pb2.SynthesizeRequest(text=FLOOD_TEXT, voice="en_US-joe-medium")
            try:
                await tts.Synthesize(request, timeout=FLOOD_DEADLINE_S,
                                     metadata=bearer("flood-token"))
            except grpc.aio.AioRpcError as error:
                return error.code()
            finished.append("flood")
            return grpc.StatusCode.OK

        floods = [asyncio.ensure_future(flood()) for _ in range(FLOODERS)]
        async with asyncio.timeout(30):
            while piper.pending < 10:  # noqa: ASYNC110 - the flood has queued work (bounded)
                await asyncio.sleep(0.005)

        polite_codes = []
        for text in POLITE_TEXTS:  # one after another, as a person talks
            request = tts_pb2.SynthesizeRequest(text=text, voice="en_US-joe-medium")
            response = await tts.Synthesize(request, timeout=30, metadata=bearer("polite-token"))
            polite_codes.append(grpc.StatusCode.OK if response.audio else None)
            finished.append("polite")
            serving = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert serving.status == health_pb2.HealthCheckResponse.SERVING
        flood_codes = Counter(await asyncio.gather(*floods))

    assert polite_codes == [grpc.StatusCode.OK] * len(POLITE_TEXTS)
    # The flood asked for ~30 s of Piper work with 6 s deadlines: most of it was refused at
    # once, the rest served; nothing waited past its deadline unnoticed.
    failed = FLOODERS - flood_codes[grpc.StatusCode.OK]
    assert set(flood_codes) <= {
        grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED
    }, flood_codes
    # The flood asked for far more Piper work than 6 s deadlines allow: it was told so at
    # once (admission's estimate may let an odd call through that then times out).
    assert flood_codes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 0.9 * failed >= 1, flood_codes
    served = flood_codes[grpc.StatusCode.OK]
    assert served >= 2, flood_codes
    # Fair queuing: the polite caller's first request went ahead of the flood's waiting
    # sentences, so it finished before most admitted flood calls (in arrival order it
    # would have waited behind all of them).
    assert finished.index("polite") <= served // 2, finished
