"""Fallback between engines over real gRPC: an overloaded engine (its queue is full) and a
failing one (a corrupt voice asset makes the real Kokoro graph fail). Both engines run on
this CPU, so by default (tts.overload_fallback "adds_capacity") Kokoro's overload spills
to the cheaper Piper and Piper's does not spill to the dearer Kokoro."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import grpc
import pytest
import pytest_asyncio

from speech.v1 import tts_pb2, tts_pb2_grpc
from speech_platform.config import load_settings
from tests.support.server import metric_samples, running_server
from tests.support.server import test_settings as server_settings
from tests.tts.audio import check_audio
from tests.tts.faults import BROKEN_VOICE, model_dir_with_broken_voice

pytestmark = pytest.mark.slow

PIPER_VOICE = "en_US-joe-medium"
# Piper's queue cannot take a three-sentence request, Kokoro's can; four fit in neither.
PIPER_QUEUE = 2
KOKORO_QUEUE = 3
THREE_SENTENCES = "One sentence here. Another one there. And a third to finish."
FOUR_SENTENCES = THREE_SENTENCES + " Then a fourth."


@pytest_asyncio.fixture(scope="module")
async def server(tmp_path_factory):
    model_dir = model_dir_with_broken_voice(
        load_settings().model_dir, tmp_path_factory.mktemp("models")
    )
    settings = server_settings(["tts"], model_dir=model_dir)
    settings.cache.backend = "off"
    settings.tts.kokoro_batcher.max_queue_size = KOKORO_QUEUE
    settings.tts.kokoro_instances = 1
    settings.tts.piper_batcher.max_queue_size = PIPER_QUEUE
    settings.tts.piper_instances = 2
    # Every request here comes from one caller, which alone may fill the whole queue: what
    # is tested is an engine full for everyone (with another caller present, a caller over
    # its own share is refused without spilling over: tests/batcher/test_shared_admission.py).
    async with running_server(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def tts(server):
    async with server.channel() as channel:
        yield tts_pb2_grpc.TextToSpeechStub(channel)


async def fallbacks(server, from_engine: str, reason: str) -> float:
    text = await server.metrics_text()
    return metric_samples(
        text, "speech_tts_fallbacks_total", from_engine=from_engine, reason=reason
    )


@contextlib.contextmanager
def overload_fallback(server, policy: str) -> Iterator[None]:
    settings = server.server.settings.tts
    was = settings.overload_fallback
    settings.overload_fallback = policy
    try:
        yield
    finally:
        settings.overload_fallback = was


async def test_overloaded_piper_does_not_spill_onto_the_dearer_kokoro_on_the_same_cpu(
    server, tts
):
    before = await fallbacks(server, "piper", "overloaded")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tts.Synthesize(
            tts_pb2.SynthesizeRequest(text=THREE_SENTENCES, voice=PIPER_VOICE), timeout=120
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "piper" in caught.value.details() and "no room for 3 more" in caught.value.details()
    assert "retry-after-ms" in dict(caught.value.trailing_metadata() or ())
    assert await fallbacks(server, "piper", "overloaded") == before


async def test_overloaded_piper_falls_back_to_the_closest_kokoro_voice_when_told_to(server, tts):
    before = await fallbacks(server, "piper", "overloaded")
    with overload_fallback(server, "always"):
        response = await tts.Synthesize(
            tts_pb2.SynthesizeRequest(text=THREE_SENTENCES, voice=PIPER_VOICE), timeout=120
        )
    # Joe is an American man: the stand-in is an American male Kokoro voice.
    assert (response.engine, response.voice) == ("kokoro", "am_adam")
    assert response.fallback and response.fallback_reason == "overloaded"
    assert await fallbacks(server, "piper", "overloaded") == before + 1


async def test_concurrent_load_beyond_the_queue_spills_over(server, tts):
    before = await fallbacks(server, "kokoro", "overloaded")
    texts = [f"Request number {word} is here." for word in
             ("one", "two", "three", "four", "five", "six", "seven", "eight")]
    responses = await asyncio.gather(
        *(
            tts.Synthesize(tts_pb2.SynthesizeRequest(text=t, voice="af_heart"), timeout=300)
            for t in texts
        )
    )
    spilled = [r for r in responses if r.fallback]
    served = [r for r in responses if not r.fallback]
    # The first finds Kokoro idle and three more fit its queue; Kokoro takes a fraction of a
    # second per sentence while all eight arrive within milliseconds, so the other four
    # spill over to Piper (two instances, two queue places: room for exactly those four).
    assert len(served) >= 1 and len(spilled) >= 1
    assert all((r.engine, r.voice) == ("kokoro", "af_heart") for r in served)
    assert all(
        (r.engine, r.voice, r.fallback_reason) == ("piper", PIPER_VOICE, "overloaded")
        for r in spilled
    )
    for response in responses:
        check_audio(response)
    assert await fallbacks(server, "kokoro", "overloaded") == before + len(spilled)


@pytest.mark.parametrize(
    ("disable_fallback", "policy", "tried_piper"),
    [(True, "adds_capacity", 0), (False, "adds_capacity", 1), (False, "never", 0)],
    ids=["no-fallback", "both-full", "policy-never"],
)
async def test_overload_with_nowhere_to_go_is_resource_exhausted(
    server, tts, disable_fallback, policy, tried_piper
):
    before = await fallbacks(server, "kokoro", "overloaded")
    with overload_fallback(server, policy), pytest.raises(grpc.aio.AioRpcError) as caught:
        await tts.Synthesize(
            tts_pb2.SynthesizeRequest(
                text=FOUR_SENTENCES,
                tier=tts_pb2.VOICE_TIER_HIGH,
                disable_fallback=disable_fallback,
            ),
            timeout=60,
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no room for 4 more" in caught.value.details()
    metadata = dict(caught.value.trailing_metadata() or ())
    assert "retry-after-ms" in metadata
    assert await fallbacks(server, "kokoro", "overloaded") == before + tried_piper


async def test_a_failing_engine_is_replaced_by_the_other(server, tts):
    before = await fallbacks(server, "kokoro", "engine_error")
    response = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(text="The voice file is corrupt.", voice=BROKEN_VOICE),
        timeout=120,
    )
    assert (response.engine, response.voice) == ("piper", PIPER_VOICE)
    assert response.fallback and response.fallback_reason == "engine_error"
    assert check_audio(response) > 0.5
    assert await fallbacks(server, "kokoro", "engine_error") == before + 1


async def test_a_failing_engine_stream_falls_back_before_its_first_chunk(tts):
    chunks = [
        c
        async for c in tts.StreamingSynthesize(
            tts_pb2.StreamingSynthesizeRequest(
                text="Streams fall back too. Every chunk says so.", voice=BROKEN_VOICE
            ),
            timeout=120,
        )
    ]
    assert [c.sentence_index for c in chunks] == [0, 1]
    assert all(
        (c.engine, c.voice, c.fallback, c.fallback_reason)
        == ("piper", PIPER_VOICE, True, "engine_error")
        for c in chunks
    )


async def test_a_failing_engine_without_fallback_is_unavailable(tts):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tts.Synthesize(
            tts_pb2.SynthesizeRequest(
                text="No way out.", voice=BROKEN_VOICE, disable_fallback=True
            ),
            timeout=60,
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "kokoro engine failed" in caught.value.details()


async def test_healthy_voices_of_the_failing_engine_still_work(tts):
    response = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(text="All good here.", voice="bf_emma"), timeout=120
    )
    assert (response.engine, response.voice, response.fallback) == ("kokoro", "bf_emma", False)
