"""TextToSpeech end to end: the real server on loopback with real Piper, Kokoro and Whisper."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import replace

import grpc
import jiwer
import pytest

from speech.v1 import common_pb2, stt_pb2, tts_pb2
from tests.support.server import histogram_buckets, metric_samples
from tests.tts.audio import check_audio, decode
from tts_service.audio_encoding import Encoding

pytestmark = pytest.mark.slow

PIPER_VOICE = "en_US-joe-medium"
WAV = common_pb2.AUDIO_ENCODING_WAV
HIGH = tts_pb2.VOICE_TIER_HIGH

ROUND_TRIP_TEXTS = [
    "The weather was warm and the children played outside until dinner.",
    "Please describe a difficult problem you solved at your last job.",
    "We will send the results to your email address by the end of the week.",
]


@pytest.fixture(scope="module")
def synthesizer(server):
    """The service's own Synthesizer (the server runs in this process): read-only use."""
    return server.server.context.services["tts"].synthesizer


AUDIO_FIELDS = set(tts_pb2.AudioConfig.DESCRIPTOR.fields_by_name)


def request(text: str, **fields) -> tts_pb2.SynthesizeRequest:
    audio = {k: fields.pop(k) for k in list(fields) if k in AUDIO_FIELDS}
    return tts_pb2.SynthesizeRequest(
        text=text, audio_config=tts_pb2.AudioConfig(**audio), skip_cache=True, **fields
    )


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split())


# ---------------------------------------------------------------------------- voices


async def test_list_voices_describes_every_voice(tts):
    voices = (await tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=10)).voices
    by_name = {v.name: v for v in voices}
    required = {"af_heart", "af_bella", "am_adam", "am_michael", "bf_emma", "bm_george"}
    assert set(by_name) >= {PIPER_VOICE, *required}
    joe = by_name[PIPER_VOICE]
    assert (joe.engine, joe.language_code, joe.gender, joe.natural_sample_rate_hertz, joe.tier) == (
        "piper", "en-US", tts_pb2.VOICE_GENDER_MALE, 22050, tts_pb2.VOICE_TIER_STANDARD,
    )
    emma = by_name["bf_emma"]
    assert (emma.engine, emma.language_code, emma.gender, emma.natural_sample_rate_hertz) == (
        "kokoro", "en-GB", tts_pb2.VOICE_GENDER_FEMALE, 24000,
    )
    assert emma.tier == tts_pb2.VOICE_TIER_HIGH


async def test_list_voices_filters_by_language_and_engine(tts):
    async def names(**filters):
        response = await tts.ListVoices(tts_pb2.ListVoicesRequest(**filters), timeout=10)
        return {v.name for v in response.voices}

    british = await names(language_code="en-GB")
    assert "bm_george" in british and PIPER_VOICE not in british
    assert all(n.startswith("b") for n in british)
    assert await names(engine="piper") == {PIPER_VOICE}
    assert await names(language_code="en", engine="kokoro") >= {"af_heart", "bf_emma"}
    assert await names(language_code="de") == set()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await names(engine="espeak")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    ("engine", "voices"),
    [("piper", [PIPER_VOICE] * 3), ("kokoro", ["af_heart", "bm_george", "am_michael"])],
)
async def test_speech_is_transcribed_back_to_its_text(tts, stt, engine, voices):
    references, hypotheses = [], []
    for text, voice in zip(ROUND_TRIP_TEXTS, voices, strict=True):
        spoken = await tts.Synthesize(
            request(text, voice=voice, sample_rate_hertz=16000), timeout=120
        )
        assert (spoken.engine, spoken.voice, spoken.fallback) == (engine, voice, False)
        check_audio(spoken, expected_rate=16000)
        heard = await stt.Transcribe(
            stt_pb2.TranscribeRequest(
                audio=spoken.audio, config=stt_pb2.RecognitionConfig(skip_cache=True)
            ),
            timeout=120,
        )
        references.append(words(text))
        hypotheses.append(words(heard.text))
    error_rate = jiwer.wer(references, hypotheses)
    print(f"{engine}: WER {error_rate:.3f} {hypotheses}")
    assert error_rate <= 0.15


# ---------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("encoding", "rate", "expected_rate"),
    [
        (common_pb2.AUDIO_ENCODING_UNSPECIFIED, 0, 22050),
        (common_pb2.AUDIO_ENCODING_LINEAR16, 0, 22050),
        (common_pb2.AUDIO_ENCODING_LINEAR16, 44100, 44100),
        (common_pb2.AUDIO_ENCODING_WAV, 8000, 8000),
        (common_pb2.AUDIO_ENCODING_MULAW, 0, 8000),
        (common_pb2.AUDIO_ENCODING_MULAW, 16000, 16000),
        (common_pb2.AUDIO_ENCODING_FLAC, 48000, 48000),
        (common_pb2.AUDIO_ENCODING_MP3, 0, 22050),
        (common_pb2.AUDIO_ENCODING_MP3, 16000, 16000),
        (common_pb2.AUDIO_ENCODING_OGG_OPUS, 0, 24000),
        (common_pb2.AUDIO_ENCODING_OGG_OPUS, 16000, 16000),
    ],
)
async def test_every_encoding_decodes_at_the_requested_rate(tts, encoding, rate, expected_rate):
    response = await tts.Synthesize(
        request("Thank you for coming in today.", encoding=encoding, sample_rate_hertz=rate),
        timeout=60,
    )
    assert response.encoding == (encoding or common_pb2.AUDIO_ENCODING_WAV)
    duration = check_audio(response, expected_rate)
    assert 1.0 < duration < 4.0


async def test_kokoro_native_rate_and_a_codec(tts):
    response = await tts.Synthesize(
        request("Good morning.", voice="am_michael", encoding=common_pb2.AUDIO_ENCODING_MP3),
        timeout=60,
    )
    assert response.engine == "kokoro"
    check_audio(response, expected_rate=24000)


async def test_speaking_rate_and_gain_change_the_audio(tts):
    text = "This sentence is read at three different speeds."
    normal, fast, quiet = [
        await tts.Synthesize(request(text, **config), timeout=60)
        for config in ({}, {"speaking_rate": 2.0}, {"volume_gain_db": -20.0})
    ]
    assert fast.audio_duration_seconds < 0.75 * normal.audio_duration_seconds
    loud_peak = decode(normal.audio, Encoding.WAV, 22050).samples
    quiet_peak = decode(quiet.audio, Encoding.WAV, 22050).samples
    ratio = abs(quiet_peak).max() / abs(loud_peak).max()
    assert ratio == pytest.approx(0.1, rel=0.2)  # -20 dB, on Piper's peak-normalised speech


# ---------------------------------------------------------------------------- concurrency

SHORT_TEXTS = ["Thank you.", "Good morning.", "Yes, please.", "See you soon."]
LONG_SENTENCES = [
    "Tell me about the largest system you have designed.",
    "How did you decide what to build first?",
    "What would you do differently today?",
    "Which trade offs did your team argue about?",
    "How did you know the system worked?",
    "What are you proudest of in that work?",
]


async def test_thirty_two_concurrent_requests_short_ones_do_not_wait_for_long_ones(
    tts, synthesizer, monkeypatch
):
    # Kokoro has one instance at 0.5-1.2 s a sentence (by machine and load), so the 12 s of
    # Kokoro work below outlasts priority_aging_s (2 s), after which waiting later sentences
    # rightly go first (no starvation: tests/batcher). What is tested here is the order
    # before aging, so Kokoro's aging is set past this test's backlog, on any machine.
    kokoro = synthesizer.engines["kokoro"]._batcher
    monkeypatch.setattr(kokoro, "policy", replace(kokoro.policy, priority_aging_s=120.0))
    calls = []  # (engine, kind, voice, text)
    for i in range(6):
        calls.append(("piper", "long", PIPER_VOICE, " ".join(LONG_SENTENCES)))
        calls += [("piper", "short", PIPER_VOICE, SHORT_TEXTS[(i + j) % 4]) for j in range(3)]
    for i in range(2):
        calls.append(("kokoro", "long", ("af_heart", "bm_george")[i],
                      " ".join(LONG_SENTENCES[i * 3 : i * 3 + 3])))
        short_voice = ("af_bella", "am_adam")[i]
        calls += [("kokoro", "short", short_voice, SHORT_TEXTS[j]) for j in (0, 3, 2)]
    assert len(calls) == 32

    async def timed(voice: str, text: str):
        started = time.perf_counter()
        response = await tts.Synthesize(request(text, voice=voice), timeout=300)
        return response, time.perf_counter() - started

    results = await asyncio.gather(*(timed(voice, text) for _, _, voice, text in calls))

    latencies: dict[tuple[str, str], list[float]] = {}
    for (engine, kind, voice, text), (response, latency) in zip(calls, results, strict=True):
        assert (response.engine, response.voice, response.fallback) == (engine, voice, False)
        duration = check_audio(response)
        spoken_words = len(text.split())
        assert 0.15 * spoken_words < duration < 1.2 * spoken_words + 1.0
        latencies.setdefault((engine, kind), []).append(latency)
    for engine in ("piper", "kokoro"):
        short, long = latencies[(engine, "short")], latencies[(engine, "long")]
        print(f"{engine}: short max {max(short):.2f}s, long min {min(long):.2f}s")
        # Every sentence is its own batch item and later sentences yield to first ones (on
        # Piper until they have waited priority_aging_s past their turn): every short
        # request is done before any long one.
        assert max(short) < min(long), f"{engine}: a short request waited behind a long one"


# ---------------------------------------------------------------------------- streaming

STREAM_SENTENCES = [
    "Streaming starts with this sentence.",
    "A second one follows.",
    "This closing sentence comes last.",
]


async def test_first_chunk_arrives_before_the_last_sentence_is_synthesized(
    server, tts, synthesizer
):
    kokoro = synthesizer.engines["kokoro"]
    before = await server.metrics_text()
    call = tts.StreamingSynthesize(
        tts_pb2.StreamingSynthesizeRequest(
            text=" ".join(STREAM_SENTENCES), voice="af_heart", skip_cache=True,
            audio_config=tts_pb2.AudioConfig(encoding=common_pb2.AUDIO_ENCODING_OGG_OPUS),
        ),
        timeout=300,
    )
    chunks, received_at = [], []
    async for chunk in call:
        received_at.append(time.monotonic())
        chunks.append(chunk)
    assert [c.sentence_index for c in chunks] == [0, 1, 2]
    assert [c.text for c in chunks] == STREAM_SENTENCES
    last_done = max(
        c.finished_at for c in kokoro.completions if c.sentence == STREAM_SENTENCES[-1]
    )
    # The engine's own record: the last sentence finished after chunk 0 was in our hands.
    assert received_at[0] < last_done
    after = await server.metrics_text()
    first_audio = "speech_tts_time_to_first_audio_seconds_count"
    assert metric_samples(after, first_audio, engine="kokoro") - metric_samples(
        before, first_audio, engine="kokoro"
    ) == 1
    assert histogram_buckets(after, "speech_tts_time_to_first_audio_seconds", engine="kokoro")

    stream = b"".join(c.audio for c in chunks)
    decoded = decode(stream, Encoding.OGG_OPUS, 24000)
    assert decoded.declared_rate == 24000
    total = sum(c.audio_duration_seconds for c in chunks)
    assert decoded.duration_s == pytest.approx(total, abs=0.03)
    assert all(c.engine == "kokoro" and c.voice == "af_heart" for c in chunks)


async def test_a_cancelled_stream_withdraws_its_queued_sentences(server, tts):
    def cancelled(text: str) -> float:
        return metric_samples(
            text, "speech_batcher_rejections_total", model="kokoro", reason="cancelled"
        )

    before = cancelled(await server.metrics_text())
    call = tts.StreamingSynthesize(
        tts_pb2.StreamingSynthesizeRequest(
            text="One. Two. Three. Four. Five. Six.", voice="am_adam", skip_cache=True
        ),
        timeout=120,
    )
    async for chunk in call:
        assert chunk.sentence_index == 0
        call.cancel()  # after the first sentence, while the others wait in Kokoro's queue
        break
    # The server notices the cancellation asynchronously: wait for it, within a bound.
    for _ in range(100):
        withdrawn = cancelled(await server.metrics_text()) - before
        if withdrawn:
            break
        await asyncio.sleep(0.1)
    assert withdrawn >= 3  # at most one more sentence was already computing


@pytest.mark.parametrize(
    "encoding",
    [common_pb2.AUDIO_ENCODING_WAV, common_pb2.AUDIO_ENCODING_LINEAR16,
     common_pb2.AUDIO_ENCODING_MULAW, common_pb2.AUDIO_ENCODING_FLAC,
     common_pb2.AUDIO_ENCODING_MP3],
)
async def test_streamed_chunks_form_one_valid_stream(tts, encoding):
    chunks = [
        chunk
        async for chunk in tts.StreamingSynthesize(
            tts_pb2.StreamingSynthesizeRequest(
                text=" ".join(STREAM_SENTENCES), skip_cache=True,
                audio_config=tts_pb2.AudioConfig(encoding=encoding, sample_rate_hertz=16000),
            ),
            timeout=120,
        )
    ]
    assert [c.sentence_index for c in chunks] == [0, 1, 2]
    assert {c.sample_rate_hertz for c in chunks} == {16000}
    assert {c.encoding for c in chunks} == {encoding}
    decoded = decode(b"".join(c.audio for c in chunks), Encoding(encoding), 16000)
    assert decoded.decoded_rate == 16000
    total = sum(c.audio_duration_seconds for c in chunks)
    slack = 0.15 if encoding == common_pb2.AUDIO_ENCODING_MP3 else 1e-3
    assert total - 1e-3 <= decoded.duration_s <= total + slack
    if encoding == common_pb2.AUDIO_ENCODING_WAV:
        assert chunks[0].audio.startswith(b"RIFF")
        assert not any(c.audio.startswith(b"RIFF") for c in chunks[1:])


# ---------------------------------------------------------------------------- cache


async def test_repeated_requests_are_served_from_the_cache(tts):
    text = "This answer is cached after the first time."
    cached = tts_pb2.SynthesizeRequest(text=text, voice=PIPER_VOICE)
    first = await tts.Synthesize(cached, timeout=60)
    second = await tts.Synthesize(cached, timeout=60)
    assert not first.cache_hit and second.cache_hit
    assert second.audio == first.audio and second.engine == "piper"
    fresh = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(text=text, voice=PIPER_VOICE, skip_cache=True), timeout=60
    )
    assert not fresh.cache_hit
    other_rate = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(
            text=text, voice=PIPER_VOICE, audio_config=tts_pb2.AudioConfig(speaking_rate=1.5)
        ),
        timeout=60,
    )
    assert not other_rate.cache_hit
    # Normalisation happens before the key: the same words written differently hit.
    respelled = await tts.Synthesize(
        tts_pb2.SynthesizeRequest(text="  This answer is cached after the first  time. ",
                                  voice=PIPER_VOICE),
        timeout=60,
    )
    assert respelled.cache_hit


async def test_repeated_streams_replay_from_the_cache(tts):
    streaming = tts_pb2.StreamingSynthesizeRequest(
        text="Cached streams keep their sentences. Both of them.", voice=PIPER_VOICE
    )
    first = [c async for c in tts.StreamingSynthesize(streaming, timeout=60)]
    second = [c async for c in tts.StreamingSynthesize(streaming, timeout=60)]
    assert [c.cache_hit for c in first] == [False, False]
    assert [c.cache_hit for c in second] == [True, True]
    assert [c.audio for c in second] == [c.audio for c in first]
    assert [c.text for c in second] == [c.text for c in first]


# ---------------------------------------------------------------------------- bad input

BAD = [
    ({"text": ""}, grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
    ({"text": "   \n\t "}, grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
    ({"text": "a" * 5001}, grpc.StatusCode.INVALID_ARGUMENT, "at most 5000"),
    ({"text": "Hi.", "voice": "nobody"}, grpc.StatusCode.NOT_FOUND, "'nobody' not found"),
    ({"text": "Hi.", "tier": 9}, grpc.StatusCode.INVALID_ARGUMENT, "tier 9"),
    ({"text": "Hi.", "priority": 9}, grpc.StatusCode.INVALID_ARGUMENT, "priority 9"),
    ({"text": "Hi.", "encoding": 42}, grpc.StatusCode.INVALID_ARGUMENT, "audio_config.encoding"),
    ({"text": "Hi.", "sample_rate_hertz": 4000}, grpc.StatusCode.INVALID_ARGUMENT,
     "sample_rate_hertz must be 0"),
    ({"text": "Hi.", "sample_rate_hertz": 96000}, grpc.StatusCode.INVALID_ARGUMENT,
     "between 8000 and 48000"),
    ({"text": "Hi.", "encoding": common_pb2.AUDIO_ENCODING_OGG_OPUS, "sample_rate_hertz": 22050},
     grpc.StatusCode.INVALID_ARGUMENT, "not possible with OGG_OPUS"),
    ({"text": "Hi.", "encoding": common_pb2.AUDIO_ENCODING_MP3, "sample_rate_hertz": 9000},
     grpc.StatusCode.INVALID_ARGUMENT, "not possible with MP3"),
    ({"text": "Hi.", "speaking_rate": 0.1}, grpc.StatusCode.INVALID_ARGUMENT,
     "speaking_rate must be between 0.25 and 4.0"),
    ({"text": "Hi.", "speaking_rate": 5.0}, grpc.StatusCode.INVALID_ARGUMENT, "speaking_rate"),
    ({"text": "Hi.", "speaking_rate": math.nan}, grpc.StatusCode.INVALID_ARGUMENT, "speaking_rate"),
    ({"text": "Hi.", "volume_gain_db": 16.5}, grpc.StatusCode.INVALID_ARGUMENT,
     "volume_gain_db must be between -96 and 16"),
    ({"text": "Hi.", "volume_gain_db": -100}, grpc.StatusCode.INVALID_ARGUMENT, "volume_gain_db"),
    ({"text": "\U0001f600\U0001f44d\U0001f389"}, grpc.StatusCode.INVALID_ARGUMENT,
     "nothing to speak"),
    ({"text": "\u4f60\u597d\uff0c\u4e16\u754c\u3002"}, grpc.StatusCode.INVALID_ARGUMENT,
     "nothing to speak"),
    ({"text": "\x00\x01\x02\x1b"}, grpc.StatusCode.INVALID_ARGUMENT, "nothing to speak"),
    ({"text": "?!... ---"}, grpc.StatusCode.INVALID_ARGUMENT, "nothing to speak"),
    # Within max_text_chars, but asking for far more than it looks (limits.py):
    ({"text": "12345678 " * 500}, grpc.StatusCode.INVALID_ARGUMENT, "tts.max_normalized_chars"),
    ({"text": "Hi. " * 1000}, grpc.StatusCode.INVALID_ARGUMENT, "tts.max_sentences"),
    ({"text": "word " * 990, "speaking_rate": 0.25}, grpc.StatusCode.INVALID_ARGUMENT,
     "tts.max_output_seconds"),
]


def _bad_request(kind, fields):
    fields = dict(fields)
    audio = {k: fields.pop(k) for k in list(fields) if k in AUDIO_FIELDS}
    message = (
        tts_pb2.SynthesizeRequest if kind == "unary" else tts_pb2.StreamingSynthesizeRequest
    )
    return message(audio_config=tts_pb2.AudioConfig(**audio), **fields)


@pytest.mark.parametrize("kind", ["unary", "stream"])
@pytest.mark.parametrize(("fields", "code", "message"), BAD, ids=lambda v: repr(v)[:40])
async def test_bad_input_gets_a_clear_error(tts, kind, fields, code, message):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if kind == "unary":
            await tts.Synthesize(_bad_request(kind, fields), timeout=30)
        else:
            async for _ in tts.StreamingSynthesize(_bad_request(kind, fields), timeout=30):
                pass
    assert caught.value.code() == code
    assert message in caught.value.details()


ODD_BUT_SPEAKABLE = [
    "Hello\x00 there\x07, how\u200b are you?",
    "Great job \U0001f44d\U0001f389 on the release!",
    "The word \u4f60\u597d means hello, and \u043f\u0440\u0438\u0432\u0435\u0442 too.",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e costs $4.50, i.e. cheap.",
    "\ufeffZero\u2060width joiners\u200d and soft\u00adhyphens.",
]


@pytest.mark.parametrize("text", ODD_BUT_SPEAKABLE, ids=range(len(ODD_BUT_SPEAKABLE)))
async def test_odd_characters_are_spoken_around(tts, text):
    response = await tts.Synthesize(request(text), timeout=60)
    assert check_audio(response) > 0.5


async def test_a_five_thousand_character_paragraph_is_synthesized(tts):
    paragraph = (
        "Our quarterly review found that the platform handled twice the expected traffic, "
        "with no outage and a small rise in latency during the evening peak, "
    ) * 40
    paragraph = paragraph[:4990] + " done."
    assert len(paragraph) <= 5000
    # Read at four times the speed: the same text handling at a quarter of the compute.
    response = await tts.Synthesize(request(paragraph, speaking_rate=4.0), timeout=300)
    assert check_audio(response) > 45


async def test_the_server_keeps_serving_after_bad_input(tts):
    for fields, _, _ in BAD[:6]:
        with pytest.raises(grpc.aio.AioRpcError):
            await tts.Synthesize(_bad_request("unary", fields), timeout=30)
    response = await tts.Synthesize(request("Still here.", voice="bf_emma"), timeout=60)
    assert response.engine == "kokoro" and check_audio(response) > 0.3
