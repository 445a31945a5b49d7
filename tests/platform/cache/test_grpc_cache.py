"""The cache seen through the real server: Synthesize over gRPC on loopback, Piper voice,
Redis behind it. What a client sees (cache_hit, identical audio) and what the engines did
(batcher metrics) must agree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from speech.v1 import common_pb2, tts_pb2, tts_pb2_grpc
from speech_platform.config import CacheSettings
from speech_server import cache_warm_cli as warm_cli
from tests.support.redis import delete_keys
from tests.support.server import RunningServer, metric_samples, running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def tts_server(redis_url: str) -> AsyncIterator[RunningServer]:
    """One TTS server (Piper only, to load fast) for the module, with a tiered cache on the
    test Redis under a prefix of its own."""
    settings = server_settings(services=("tts",))
    settings.tts.engines = ["piper"]
    settings.cache = CacheSettings(
        backend="tiered", redis_url=redis_url, key_prefix="speech-test:grpc-cache:"
    )
    async with running_server(settings, services=("tts",)) as server:
        yield server
    delete_keys(redis_url, "speech-test:grpc-cache:")


def request(text: str, **fields: object) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(
        text=text,
        tier=tts_pb2.VOICE_TIER_STANDARD,
        audio_config=tts_pb2.AudioConfig(encoding=common_pb2.AUDIO_ENCODING_WAV),
        **fields,  # type: ignore[arg-type]
    )


async def engine_items(server: RunningServer) -> float:
    """Sentences the Piper batcher has computed so far (sum of its batch sizes)."""
    return metric_samples(
        await server.metrics_text(), "speech_batcher_batch_size_sum", model="piper"
    )


async def test_same_synthesize_twice_is_a_byte_identical_hit(tts_server: RunningServer) -> None:
    async with tts_server.channel() as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        text = "Tell me about a project you are proud of."
        first = await stub.Synthesize(request(text), timeout=120)
        second = await stub.Synthesize(request(text), timeout=120)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.audio == first.audio and len(first.audio) > 1000
    assert first.audio[:4] == b"RIFF"
    assert (second.engine, second.voice) == (first.engine, first.voice)


async def test_skip_cache_is_never_a_hit(tts_server: RunningServer) -> None:
    async with tts_server.channel() as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        text = "What are your salary expectations?"
        stored = await stub.Synthesize(request(text), timeout=120)  # now cached
        before = await engine_items(tts_server)
        fresh = await stub.Synthesize(request(text, skip_cache=True), timeout=120)
        after_fresh = await engine_items(tts_server)
        cached = await stub.Synthesize(request(text), timeout=120)
    assert not fresh.cache_hit
    assert after_fresh > before  # the engine really ran again
    # skip_cache did not overwrite the entry (Piper's sampling makes each run differ a bit)
    assert cached.cache_hit and cached.audio == stored.audio
    assert await engine_items(tts_server) == after_fresh


async def test_fifty_identical_concurrent_requests_compute_once(
    tts_server: RunningServer,
) -> None:
    text = "Why do you want to leave your current job?"
    async with tts_server.channel() as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        # what one uncached request of this text costs the engine (sentences)
        before = await engine_items(tts_server)
        await stub.Synthesize(request(text, skip_cache=True), timeout=120)
        one_request = await engine_items(tts_server) - before
        assert one_request >= 1

        before = await engine_items(tts_server)
        responses = await asyncio.gather(
            *(stub.Synthesize(request(text), timeout=300) for _ in range(50))
        )
        computed = await engine_items(tts_server) - before
    assert computed == one_request
    assert len({r.audio for r in responses}) == 1  # one computation, shared
    # They shared one computation; on a loaded machine a straggler may arrive after it
    # finished and hit the cache instead, which is the same one computation.
    assert not all(r.cache_hit for r in responses)
    async with tts_server.channel() as channel:
        again = await tts_pb2_grpc.TextToSpeechStub(channel).Synthesize(request(text))
    assert again.cache_hit


async def test_warm_command_fills_the_cache(tts_server: RunningServer, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text(
        "What motivates you?\n\nDescribe your ideal team.\nWhat motivates you?\n"
        "How do you handle feedback?\n"
    )
    argv = [str(questions), "--target", tts_server.address, "--tier", "standard",
            "--encoding", "wav", "--concurrency", "2", "--no-progress"]

    assert await asyncio.to_thread(warm_cli.main, argv) == 0
    first = capsys.readouterr().out
    assert "warmed 3 texts" in first and "0 already cached" in first and "3 synthesized" in first

    assert await asyncio.to_thread(warm_cli.main, argv) == 0
    second = capsys.readouterr().out
    assert "3 already cached" in second and "0 synthesized" in second

    async with tts_server.channel() as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        live = await stub.Synthesize(request("Describe your ideal team."), timeout=120)
    assert live.cache_hit


async def test_warm_command_reports_failures(tts_server: RunningServer, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("A fine question?\n" + "x" * 6000 + "\n")  # over max_text_chars
    argv = [str(texts), "--target", tts_server.address, "--no-progress"]
    assert await asyncio.to_thread(warm_cli.main, argv) == 1
    captured = capsys.readouterr()
    assert "1 failed" in captured.out
    assert "INVALID_ARGUMENT" in captured.err

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert warm_cli.main([str(empty), "--target", tts_server.address]) == 2


async def test_streaming_synthesize_replays_the_cached_chunks(tts_server: RunningServer) -> None:
    text = "Walk me through your resume. Then tell me what you learned. Keep it short."
    stream_request = tts_pb2.StreamingSynthesizeRequest(
        text=text,
        tier=tts_pb2.VOICE_TIER_STANDARD,
        audio_config=tts_pb2.AudioConfig(encoding=common_pb2.AUDIO_ENCODING_LINEAR16),
    )
    async with tts_server.channel() as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        live = [m async for m in stub.StreamingSynthesize(stream_request, timeout=120)]
        replay = [m async for m in stub.StreamingSynthesize(stream_request, timeout=120)]
    assert len(live) == 3  # one message per sentence
    assert not any(m.cache_hit for m in live)
    assert all(m.cache_hit for m in replay)
    assert [(m.sentence_index, m.text, m.audio) for m in replay] == [
        (m.sentence_index, m.text, m.audio) for m in live
    ]
