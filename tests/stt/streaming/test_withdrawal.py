"""Work a stream no longer needs is withdrawn from the batcher, never computed: a client
cancel frees its queued final at once, and a queued interim is replaced by the newer one
rather than computed twice. One model instance makes "queued" observable: while it
computes one decode, every other decode waits in the batcher's queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
import pytest

from batcher import RequestCancelled
from speech.v1 import stt_pb2, stt_pb2_grpc
from stt_service.options import TranscribeOptions
from stt_service.service import SpeechToTextService
from stt_service.streaming.claim import DecodeClaim
from stt_service.streaming.config import plan_stream
from stt_service.streaming.session import Outgoing, StreamSession, window_item
from stt_service.transcriber import LoadedModel, Transcriber
from tests.stt.streaming.speech import join_clips, streaming_config, word_error_rate
from tests.support.server import RunningServer, metric_samples, running_server
from tests.support.server import test_settings as server_settings

MODEL_LABEL = "whisper-tiny.en"


@pytest.fixture(scope="module")
async def one_instance() -> AsyncIterator[RunningServer]:
    settings = server_settings(["stt"])
    settings.stt.instances = 1
    async with running_server(settings) as server:
        yield server


def transcriber_of(server: RunningServer) -> Transcriber:
    service = server.server.context.services["stt"]
    assert isinstance(service, SpeechToTextService)
    return service.transcriber


async def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Waits, bounded, for a condition on the server's state. The batcher's counters have
    no event to wait on, so the condition is checked every 5 ms."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polling counters, not sleeping to sync
            await asyncio.sleep(0.005)


def computed_items(model: LoadedModel) -> int:
    return sum(size * count for size, count in model.observer.batch_sizes.items())


def pcm_bytes(pcm: np.ndarray) -> bytes:
    return pcm.astype("<i2").tobytes()


async def occupy_the_instance(transcriber: Transcriber, librivox_pcm: list) -> asyncio.Task:
    """Starts a long decode (25 s of speech, beam 5) and returns once it is computing."""
    model = transcriber.model()
    speech = join_clips(librivox_pcm, pause_s=0.2).pcm.astype(np.float32) / 32768.0
    resolved = transcriber.resolve(transcriber_options())
    task = asyncio.ensure_future(transcriber.decode_windows(resolved, [speech[: 16000 * 29]]))
    await wait_until(lambda: model.batcher.running == 1)
    return task


def transcriber_options() -> TranscribeOptions:
    return TranscribeOptions(language="en", beam_size=5)


async def test_a_client_cancel_withdraws_its_queued_final(
    one_instance: RunningServer, librivox_pcm: list
) -> None:
    transcriber = transcriber_of(one_instance)
    model = transcriber.model()
    before = await one_instance.metrics_text()
    cancelled_before = model.observer.rejections["cancelled"]
    items_before = computed_items(model)
    # A sentence whose pause is sent only once the only instance is busy elsewhere.
    pause_now = asyncio.Event()
    release = asyncio.Event()
    short = pcm_bytes(join_clips([librivox_pcm[4]], pause_s=0.0, lead_s=0.3).pcm)

    async def requests() -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
        # An endpoint silence equal to the tail: no final is decoded ahead of it.
        yield streaming_config(interim_results=False, endpoint_silence_ms=300)
        yield stt_pb2.StreamingTranscribeRequest(audio_content=short)
        await pause_now.wait()
        yield stt_pb2.StreamingTranscribeRequest(audio_content=bytes(32000))
        await release.wait()  # stays open: only the cancel ends it

    async with one_instance.channel() as channel:
        call = stt_pb2_grpc.SpeechToTextStub(channel).StreamingTranscribe(requests())
        responses = asyncio.ensure_future(_drain(call))
        long_decode = await occupy_the_instance(transcriber, librivox_pcm)
        pause_now.set()
        await wait_until(lambda: model.batcher.pending == 1)  # the final waits behind it
        assert model.batcher.running == 1 and not long_decode.done()
        call.cancel()
        await wait_until(lambda: model.batcher.pending == 0)
        assert model.observer.rejections["cancelled"] == cancelled_before + 1
        assert not long_decode.done(), "withdrawn at once, not when the instance freed"
        await long_decode
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await responses
    assert call.cancelled()
    # Only the long decode was ever computed; the stream's final never reached the engine.
    assert computed_items(model) == items_before + 1
    after = await one_instance.metrics_text()
    rejections = "speech_batcher_rejections_total"
    labels = {"model": MODEL_LABEL, "reason": "cancelled"}
    assert (
        metric_samples(after, rejections, **labels) - metric_samples(before, rejections, **labels)
        == 1
    )
    assert metric_samples(after, "speech_stt_streams_active") == 0


async def _drain(call: grpc.aio.StreamStreamCall) -> list[stt_pb2.StreamingTranscribeResponse]:
    return [response async for response in call]


def new_session(transcriber: Transcriber, out: list[Outgoing], interval_ms: int) -> StreamSession:
    plan = plan_stream(
        streaming_config(interim_interval_ms=interval_ms), transcriber, transcriber.settings
    )
    failures: list[BaseException] = []
    return StreamSession(plan, out.append, failures.append)


async def test_a_queued_interim_is_superseded_not_computed_twice(
    one_instance: RunningServer, librivox_pcm: list
) -> None:
    transcriber = transcriber_of(one_instance)
    model = transcriber.model()
    loop = asyncio.get_running_loop()
    out: list[Outgoing] = []
    session = new_session(transcriber, out, interval_ms=200)
    cancelled_before = model.observer.rejections["cancelled"]
    items_before = computed_items(model)
    long_decode = await occupy_the_instance(transcriber, librivox_pcm)
    speech = pcm_bytes(librivox_pcm[0][0][: 16000 * 3])
    for offset in range(0, len(speech), 3200):  # 3 s of speech while the instance is busy
        await session.feed(speech[offset : offset + 3200], loop.time())
        assert model.batcher.pending <= 1, "a stream has at most one interim waiting"
    assert model.batcher.running == 1 and not long_decode.done()
    superseded = session.interims_superseded
    assert superseded >= 5
    assert session.interims_submitted == superseded + 1
    assert model.observer.rejections["cancelled"] - cancelled_before == superseded
    await long_decode
    await wait_until(lambda: len(out) == 1)
    # The long decode and the newest interim: the superseded ones never ran.
    assert computed_items(model) == items_before + 2
    (interim,) = [o.response for o in out]
    assert not interim.is_final and 2.75 <= interim.end_seconds <= 3.0
    assert "dashwood" in interim.text.lower()
    session.close()


async def test_no_second_interim_starts_while_one_is_computing(
    one_instance: RunningServer, librivox_pcm: list
) -> None:
    transcriber = transcriber_of(one_instance)
    model = transcriber.model()
    loop = asyncio.get_running_loop()
    out: list[Outgoing] = []
    session = new_session(transcriber, out, interval_ms=300)
    speech = pcm_bytes(librivox_pcm[0][0][: 16000 * 4])
    await session.feed(speech[:32000], loop.time())  # 1 s: the first interim is due
    assert session.interims_submitted == 1
    await wait_until(lambda: model.batcher.running == 1)
    await session.feed(speech[32000:64000], loop.time())  # due again while it computes
    assert session.interims_submitted == 1 and model.batcher.pending == 0
    assert session.interims_superseded == 0
    # As soon as the first one is out, the next (covering the newer audio) is submitted.
    await wait_until(lambda: session.interims_submitted == 2)
    assert [round(o.response.end_seconds, 2) for o in out] == [1.0]
    await wait_until(lambda: len(out) == 2)
    assert out[1].response.end_seconds == pytest.approx(2.0, abs=0.01)
    session.close()


async def test_an_abandoned_item_is_skipped_even_inside_a_formed_batch(
    one_instance: RunningServer, librivox_pcm: list
) -> None:
    transcriber = transcriber_of(one_instance)
    model = transcriber.model()
    resolved = transcriber.resolve(transcriber_options())
    claim = DecodeClaim()
    assert claim.abandon()  # the stream gave it up after the batcher took it
    samples = librivox_pcm[4][0].astype(np.float32) / 32768.0
    with pytest.raises(RequestCancelled):
        await model.batcher.submit(window_item(samples, resolved, claim))
    assert not claim.started
    started = DecodeClaim()
    result = await model.batcher.submit(window_item(samples, resolved, started))
    assert started.started and not started.abandon()
    assert "amiable" in " ".join(s.text for s in result.segments).lower()


def final_session(transcriber: Transcriber, out: list[Outgoing]) -> StreamSession:
    plan = plan_stream(
        streaming_config(interim_results=False, endpoint_silence_ms=1200),
        transcriber,
        transcriber.settings,
    )
    return StreamSession(plan, out.append, lambda error: None)


async def test_a_final_decoded_ahead_is_sent_at_the_endpoint_not_before(
    one_instance: RunningServer, librivox_pcm: list
) -> None:
    transcriber = transcriber_of(one_instance)
    model = transcriber.model()
    loop = asyncio.get_running_loop()
    out: list[Outgoing] = []
    session = final_session(transcriber, out)
    items_before = computed_items(model)
    sentence = join_clips([librivox_pcm[4]], pause_s=0.5, lead_s=0.3)
    await session.feed(pcm_bytes(sentence.pcm), loop.time())
    # The pause has lasted the tail: the final is decoded ahead, but not sent.
    await wait_until(lambda: computed_items(model) == items_before + 1)
    await wait_until(lambda: model.batcher.running == 0)
    assert out == []
    await session.feed(bytes(32000), loop.time())  # the pause reaches the endpoint
    await wait_until(lambda: len(out) == 1)
    assert session.finals_ahead == 1 and computed_items(model) == items_before + 1
    (final,) = [o.response for o in out]
    assert final.is_final
    assert word_error_rate(sentence.references, [final.text]) <= 0.2
    session.close()


async def test_a_final_decoded_ahead_is_dropped_when_speech_resumes(
    one_instance: RunningServer, librivox_pcm: list
) -> None:
    transcriber = transcriber_of(one_instance)
    model = transcriber.model()
    loop = asyncio.get_running_loop()
    out: list[Outgoing] = []
    session = final_session(transcriber, out)
    items_before = computed_items(model)
    first = join_clips([librivox_pcm[4]], pause_s=0.6, lead_s=0.3)
    await session.feed(pcm_bytes(first.pcm), loop.time())
    await wait_until(lambda: computed_items(model) == items_before + 1)
    await wait_until(lambda: model.batcher.running == 0)  # decoded ahead, not sent
    assert out == []
    # Speech resumes before the endpoint: that result is dropped, one utterance goes on.
    second = join_clips([librivox_pcm[1]], pause_s=1.5, lead_s=0.0)
    data = pcm_bytes(second.pcm)
    for offset in range(0, len(data), 3200):  # 100 ms chunks: the pause is seen growing
        await session.feed(data[offset : offset + 3200], loop.time())
    await wait_until(lambda: len(out) == 1)
    (final,) = [o.response for o in out]
    assert final.utterance_index == 0
    assert word_error_rate([*first.references, *second.references], [final.text]) <= 0.2
    assert session.finals_ahead == 1  # the second pause's, adopted at its endpoint
    assert computed_items(model) == items_before + 2
    session.close()
