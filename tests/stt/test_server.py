"""SpeechToText end to end: the real server on loopback, real recordings, real tiny.en."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpc
import pytest
import pytest_asyncio

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.media import encode, join_with_silence, wav_bytes, wer
from tests.support.server import histogram_buckets, metric_samples, running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow

MAX_AUDIO_S = 120.0
MODEL_LABEL = "whisper-tiny.en"


@pytest_asyncio.fixture(scope="module")
async def server():
    settings = server_settings(["stt"])
    settings.stt.models = ["tiny.en"]
    settings.stt.default_model = "tiny.en"
    settings.stt.max_audio_seconds = MAX_AUDIO_S
    # Spelled out: the batching test reasons about two instances, batches of up to four
    # (see SttBatcherSettings for the defaults). The deadline case lives in
    # tests/server/test_runtime.py.
    settings.stt.instances = 2
    settings.stt.cpu_threads = 1
    settings.stt.batcher.max_batch_size = 4
    settings.stt.batcher.max_queue_delay_ms = 10
    # Unpacked, so that every request is one batch item and the batch-size metrics
    # count requests (packing is tested in test_packing.py).
    async with running_server(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def stub(server):
    async with server.channel(**{"grpc.max_send_message_length": 64 << 20}) as channel:
        yield stt_pb2_grpc.SpeechToTextStub(channel)


def _request(clip, **config) -> stt_pb2.TranscribeRequest:
    if clip.raw:
        config.setdefault("encoding", common_pb2.AUDIO_ENCODING_LINEAR16)
        config.setdefault("sample_rate_hertz", 16000)
    return stt_pb2.TranscribeRequest(
        audio=clip.payload, config=stt_pb2.RecognitionConfig(skip_cache=True, **config)
    )


async def test_recorded_speech_is_transcribed_accurately(stub, speech_clips):
    rates = []
    for clip in speech_clips:
        response = await stub.Transcribe(_request(clip), timeout=120)
        rate = wer(clip.reference, response.text)
        rates.append(rate)
        print(f"WER {clip.name:>9}: {rate:.3f}  ref={clip.reference!r}  hyp={response.text!r}")
        assert response.model == "tiny.en"
        assert response.language_code == "en"
        assert response.audio_duration_seconds == pytest.approx(clip.duration_s, abs=0.01)
        assert not response.cache_hit
    mean = sum(rates) / len(rates)
    print(f"mean WER over {len(rates)} clips: {mean:.3f}")
    assert mean <= 0.15


async def test_sixteen_concurrent_requests_are_batched(server, stub, speech_clips):
    before = await server.metrics_text()
    clips = [speech_clips[i % len(speech_clips)] for i in range(16)]
    responses = await asyncio.gather(
        *(stub.Transcribe(_request(clip), timeout=300) for clip in clips)
    )
    after = await server.metrics_text()

    def delta(name: str) -> float:
        return metric_samples(after, name, model=MODEL_LABEL) - metric_samples(
            before, name, model=MODEL_LABEL
        )

    batches = delta("speech_batcher_batch_size_count")
    items = delta("speech_batcher_batch_size_sum")
    singles = (
        histogram_buckets(after, "speech_batcher_batch_size", model=MODEL_LABEL)[1.0]
        - histogram_buckets(before, "speech_batcher_batch_size", model=MODEL_LABEL)[1.0]
    )
    print(f"16 requests ran as {batches:.0f} batches ({items / batches:.1f} items on average)")
    assert items == 16
    assert batches < 16
    assert batches - singles >= 1  # at least one batch held several requests
    references = [c.reference for c in speech_clips]
    for clip, response in zip(clips, responses, strict=True):
        rates = [wer(reference, response.text) for reference in references]
        # Each caller got its own transcript: closest to its own clip, and accurate.
        assert rates[speech_clips.index(clip)] == min(rates)
        assert rates[speech_clips.index(clip)] <= 0.35


async def test_word_timestamps(stub, speech_clips):
    for clip in speech_clips[:2]:
        response = await stub.Transcribe(_request(clip, enable_word_time_offsets=True), timeout=120)
        words = list(response.words)
        assert wer(clip.reference, " ".join(w.word for w in words)) <= 0.35
        start = 0.0
        for word in words:
            assert start <= word.start_seconds <= word.end_seconds <= clip.duration_s
            assert 0.0 <= word.probability <= 1.0
            start = word.start_seconds
        for segment in response.segments:
            inside = [
                w
                for w in words
                if segment.start_seconds - 0.5 <= w.start_seconds <= segment.end_seconds + 0.5
            ]
            assert inside
    plain = await stub.Transcribe(_request(speech_clips[0]), timeout=120)
    assert not plain.words


async def test_long_audio_gets_absolute_times(stub, speech_clips):
    clips = speech_clips  # the five LibriVox clips, then goforward
    audio, spans = join_with_silence([c.samples for c in clips], gap_s=2.5)
    assert len(audio) / 16000 > 30
    response = await stub.Transcribe(
        stt_pb2.TranscribeRequest(
            audio=wav_bytes(audio),
            config=stt_pb2.RecognitionConfig(enable_word_time_offsets=True, skip_cache=True),
        ),
        timeout=300,
    )
    reference = " ".join(c.reference for c in clips)
    print(f"joined {len(audio) / 16000:.1f} s: WER {wer(reference, response.text):.3f}")
    assert wer(reference, response.text) <= 0.2
    forward = [w for w in response.words if "forward" in w.word.lower()]
    assert forward, response.text
    last_start, last_end = spans[-1]
    assert last_start - 0.5 <= forward[-1].start_seconds <= last_end + 0.5
    assert forward[-1].start_seconds > 30
    starts = [w.start_seconds for w in response.words]
    assert starts == sorted(starts)


async def test_every_container_is_accepted(stub, speech_clips):
    clip = speech_clips[4]  # "he might even have been made amiable himself"
    payloads = {
        "flac": encode(clip.samples, "flac"),
        "mp3": encode(clip.samples, "mp3", out_rate=44100),
        "ogg": encode(clip.samples, "ogg", out_rate=48000),
        "mulaw": encode(clip.samples, "mulaw", rate=16000, out_rate=8000),
    }
    for name, payload in payloads.items():
        config = stt_pb2.RecognitionConfig(skip_cache=True)
        if name == "mulaw":
            config.encoding = common_pb2.AUDIO_ENCODING_MULAW
            config.sample_rate_hertz = 8000
        response = await stub.Transcribe(
            stt_pb2.TranscribeRequest(audio=payload, config=config), timeout=120
        )
        print(f"{name}: {response.text!r}")
        assert wer(clip.reference, response.text) <= 0.25, name


async def test_repeated_request_is_a_cache_hit_unless_skipped(stub, speech_clips):
    clip = speech_clips[2]
    request = stt_pb2.TranscribeRequest(
        audio=clip.payload, config=stt_pb2.RecognitionConfig(beam_size=2)
    )
    first = await stub.Transcribe(request, timeout=120)
    second = await stub.Transcribe(request, timeout=120)
    assert second.cache_hit and second.text == first.text
    request.config.skip_cache = True
    assert not (await stub.Transcribe(request, timeout=120)).cache_hit
    request.config.skip_cache = False
    request.config.beam_size = 3  # another option is another entry
    assert not (await stub.Transcribe(request, timeout=120)).cache_hit


async def test_list_models(stub):
    response = await stub.ListModels(stt_pb2.ListModelsRequest(), timeout=10)
    (model,) = response.models
    assert model.name == "tiny.en" and model.is_default and not model.multilingual
    assert list(model.languages) == ["en"]
    assert model.device == "cpu" and model.compute_type.startswith("int8")
    assert model.instances >= 1


# ----------------------------------------------------------------------------- bad input

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _bad_requests(
    clip, wav: bytes
) -> list[tuple[str, stt_pb2.TranscribeRequest, grpc.StatusCode, str]]:
    silence = b"\x00\x00" * int(16000 * (MAX_AUDIO_S + 5))
    config = stt_pb2.RecognitionConfig
    linear16 = common_pb2.AUDIO_ENCODING_LINEAR16
    return [
        ("empty", stt_pb2.TranscribeRequest(audio=b""), INVALID, "audio is empty"),
        (
            "undecodable",
            stt_pb2.TranscribeRequest(audio=b"\x13\x37" * 4000),
            INVALID,
            "could not be decoded",
        ),
        (
            "truncated wav",
            stt_pb2.TranscribeRequest(audio=wav[: len(wav) // 2]),
            INVALID,
            "truncated",
        ),
        (
            "raw without rate",
            stt_pb2.TranscribeRequest(audio=clip.payload, config=config(encoding=linear16)),
            INVALID,
            "sample_rate_hertz is required",
        ),
        (
            "raw partial frame",
            stt_pb2.TranscribeRequest(
                audio=clip.payload[:-1], config=config(encoding=linear16, sample_rate_hertz=16000)
            ),
            INVALID,
            "truncated",
        ),
        (
            "too long",
            stt_pb2.TranscribeRequest(
                audio=silence, config=config(encoding=linear16, sample_rate_hertz=16000)
            ),
            INVALID,
            f"at most {MAX_AUDIO_S:g} s",
        ),
        (
            "negative rate",
            stt_pb2.TranscribeRequest(audio=wav, config=config(sample_rate_hertz=-1)),
            INVALID,
            "sample_rate_hertz must be >= 0",
        ),
        (
            "channels",
            stt_pb2.TranscribeRequest(audio=wav, config=config(audio_channel_count=99)),
            INVALID,
            "audio_channel_count",
        ),
        (
            "encoding enum",
            stt_pb2.TranscribeRequest(audio=wav, config=config(encoding=cast(Any, 17))),
            INVALID,
            "unknown AudioEncoding value 17",
        ),
        (
            "beam too wide",
            stt_pb2.TranscribeRequest(audio=wav, config=config(beam_size=11)),
            INVALID,
            "beam_size must lie in 1..10",
        ),
        (
            "beam negative",
            stt_pb2.TranscribeRequest(audio=wav, config=config(beam_size=-1)),
            INVALID,
            "beam_size",
        ),
        (
            "priority enum",
            stt_pb2.TranscribeRequest(audio=wav, config=config(priority=cast(Any, 9))),
            INVALID,
            "unknown Priority value 9",
        ),
        (
            "language tag",
            stt_pb2.TranscribeRequest(audio=wav, config=config(language_code="??")),
            INVALID,
            "not a BCP-47",
        ),
        (
            "english-only model",
            stt_pb2.TranscribeRequest(audio=wav, config=config(language_code="fr-FR")),
            INVALID,
            "English only",
        ),
        (
            "prompt too long",
            stt_pb2.TranscribeRequest(audio=wav, config=config(initial_prompt="word " * 500)),
            INVALID,
            "initial_prompt is 2500 characters",
        ),
        (
            "unknown model",
            stt_pb2.TranscribeRequest(audio=wav, config=config(model="large-v9")),
            grpc.StatusCode.NOT_FOUND,
            "model 'large-v9' is not served here",
        ),
    ]


async def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(stub, speech_clips):
    raw_clip = speech_clips[5]
    wav = wav_bytes(speech_clips[1].samples)
    for name, request, code, message in _bad_requests(raw_clip, wav):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Transcribe(request, timeout=60)
        assert caught.value.code() == code, (name, caught.value.details())
        assert message in caught.value.details(), (name, caught.value.details())
    good = await stub.Transcribe(_request(raw_clip), timeout=120)
    assert wer(raw_clip.reference, good.text) <= 0.3

