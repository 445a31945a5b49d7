"""The OpenAI-compatible HTTP API, driven by the official ``openai`` client (and httpx for
what the SDK does not cover), against a real server: real models, real HTTP on loopback.

One server for the module: STT (tiny.en default, multilingual base) and TTS (Piper and
Kokoro), auth on, a small upload cap and memory budget so the limits can be reached.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import wave

import av
import grpc
import httpx
import numpy as np
import openai
import pytest
import pytest_asyncio

from speech.v1 import stt_pb2, stt_pb2_grpc
from tests.http.conftest import TOKEN, http_server, http_settings
from tests.stt.espeak import synthesize
from tests.stt.media import wav_bytes, wer
from tests.support.server import metric_samples

pytestmark = pytest.mark.slow

#: eSpeak NG's Spanish; Whisper base translates it as "Good morning, today is a good time
#: and we are going to go to the park with the children."
SPANISH = "Buenos días. Hoy hace buen tiempo en Madrid y vamos a ir al parque con los niños."
TWO_SENTENCES = "The meeting starts at nine. Please bring the report."
UPLOAD_CAP_MB = 1.0
BUDGET_MB = 4


@pytest_asyncio.fixture(scope="module")
async def api():
    settings = http_settings(["stt", "tts"])
    settings.stt.models = ["tiny.en", "base"]
    settings.stt.instances = 1
    settings.stt.cpu_threads = 2
    settings.tts.piper_instances = 1
    settings.server.http_max_upload_mb = UPLOAD_CAP_MB
    settings.server.memory_budget_mb = BUDGET_MB
    async with http_server(settings) as (server, base_url):
        client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=TOKEN, max_retries=0)
        async with httpx.AsyncClient(
            base_url=base_url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as http:
            yield server, client, http


@pytest.fixture(scope="module")
def clip(librivox_clips):
    """A LibriVox sentence as a WAV upload, and its reference text."""
    chosen = librivox_clips[1]
    return ("clip.wav", chosen.path.read_bytes(), "audio/wav"), chosen.reference


# ------------------------------------------------------------------ transcriptions


async def test_transcription_formats(api, clip):
    _, client, _ = api
    upload, reference = clip
    as_json = await client.audio.transcriptions.create(model="whisper-1", file=upload)
    assert wer(reference, as_json.text) < 0.3, as_json.text
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="text"
    )
    assert text.strip() == as_json.text.strip()
    srt = await client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="srt"
    )
    lines = srt.strip().splitlines()
    assert lines[0] == "1" and " --> " in lines[1] and lines[1].startswith("00:00:0")
    vtt = await client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n00:00:0") and "." in vtt.splitlines()[2]
    assert " ".join(lines[2:]).split()[0] in vtt


async def test_verbose_json_with_words_and_segments(api, clip):
    _, client, _ = api
    upload, reference = clip
    verbose = await client.audio.transcriptions.create(
        model="gpt-4o-transcribe",
        file=upload,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "english"
    assert 2 < verbose.duration < 6
    assert verbose.words and verbose.segments
    assert len(verbose.words) >= len(reference.split()) - 2
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts) and verbose.words[-1].end <= verbose.duration + 0.5
    assert verbose.segments[0].text.strip().split()[0] == verbose.words[0].word


async def test_a_file_sent_over_grpc_is_a_cache_hit_over_http(api, librivox_clips):
    """Both doors share the core: one cache key for the same audio and options."""
    server, client, _ = api
    audio = librivox_clips[3].path.read_bytes()
    async with server.channel() as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        first = await stub.Transcribe(
            stt_pb2.TranscribeRequest(audio=audio), metadata=[("authorization", f"Bearer {TOKEN}")]
        )
    assert not first.cache_hit
    before = await server.metrics_text()
    response = await client.audio.transcriptions.create(
        model="whisper-1", file=("x.wav", audio), response_format="text"
    )
    assert response.strip() == first.text.strip()
    after = await server.metrics_text()
    assert _hits(after) == _hits(before) + 1


def _hits(metrics: str) -> float:
    return metric_samples(metrics, "speech_cache_hits_total", service="stt")


async def test_streamed_transcription_events(api, clip):
    _, client, _ = api
    upload, _ = clip
    stream = await client.audio.transcriptions.create(
        model="whisper-1", file=upload, stream=True
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert deltas and "".join(deltas).strip() == events[-1].text.strip()


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks it so
async def test_translation_of_spanish_speech_is_english(api):
    _, client, _ = api
    spanish = wav_bytes(synthesize(SPANISH, "es"))
    translation = await client.audio.translations.create(
        model="whisper-1", file=("es.wav", spanish, "audio/wav")
    )
    words = translation.text.lower()
    assert "good morning" in words and "park" in words, translation.text
    assert "buenos" not in words and "parque" not in words
    # The same audio transcribed (not translated) stays Spanish: the task is in the key.
    transcript = await client.audio.transcriptions.create(
        model="whisper-1", file=("es.wav", spanish, "audio/wav"), language="es"
    )
    assert "buenos días" in transcript.text.lower(), transcript.text


# ------------------------------------------------------------------ speech


def _decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(int(frame.samples) for frame in container.decode(stream))
        return samples / int(stream.rate)


@pytest.mark.parametrize("response_format", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
async def test_speech_in_every_format_decodes(api, response_format):
    _, client, _ = api
    response = await client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello from the speech server.",
        response_format=response_format,
    )  # fmt: skip
    data = response.content
    if response_format == "pcm":
        seconds = len(data) / 2 / 24_000
        assert len(data) % 2 == 0
    else:
        seconds = _decoded_seconds(data)
    assert 1.0 < seconds < 5.0, (response_format, seconds)


async def test_speech_streams_sentence_by_sentence(api):
    _, _, http = api
    async with http.stream(
        "POST",
        "/v1/audio/speech",
        json={"model": "tts-1", "voice": "nova", "input": TWO_SENTENCES,
              "response_format": "wav", "stream_format": "sse"},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line.removeprefix("data: "))
            async for line in response.aiter_lines()
            if line.startswith("data: ")
        ]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 2 + ["speech.audio.done"]
    wav = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert _decoded_seconds(wav) > 2.0


async def test_high_tier_maps_openai_voices_to_kokoro(api):
    _, _, http = api
    response = await http.post(
        "/v1/audio/speech",
        json={"model": "tts-1-hd", "voice": "onyx", "input": "Good evening.",
              "response_format": "wav", "instructions": "Speak cheerfully."},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["x-speech-engine"] == "kokoro"
    assert response.headers["x-speech-voice"] == "am_onyx"
    assert "ignored" in response.headers["x-speech-note"]
    with wave.open(io.BytesIO(response.content)) as reader:
        assert reader.getframerate() == 24_000


# ------------------------------------------------------------------ models, voices, operations


async def test_models_and_voices(api):
    _, client, http = api
    ids = {model.id async for model in client.models.list()}
    assert {"tiny.en", "base", "whisper-1", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= ids
    assert (await client.models.retrieve("whisper-1")).id == "whisper-1"
    voices = (await http.get("/v1/audio/voices")).json()["data"]
    by_name = {v["id"]: v for v in voices}
    assert by_name["en_US-joe-medium"]["engine"] == "piper"
    assert by_name["af_alloy"]["openai_aliases"] == ["alloy"]


async def test_openapi_health_and_metrics_need_no_token(api):
    _, _, http = api
    bare = httpx.AsyncClient(base_url=str(http.base_url))
    async with bare:
        document = (await bare.get("/openapi.json")).json()
        assert {"/v1/audio/transcriptions", "/v1/audio/speech", "/v1/models"} <= set(
            document["paths"]
        )
        form = document["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]
        assert "multipart/form-data" in form["content"]
        assert (await bare.get("/healthz")).status_code == 200
        assert (await bare.get("/readyz")).json() == {"status": "ready"}
        metrics = (await bare.get("/metrics")).text
        assert 'speech_http_requests_total{route="/v1/audio/speech",status="200"}' in metrics


# ------------------------------------------------------------------ errors


def _error(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_auth_errors_are_401_and_403(api):
    """The server's principals decide, as over gRPC: no token is 401, an unknown one 403."""
    _, client, http = api
    wrong = client.with_options(api_key="sk-wrong")
    with pytest.raises(openai.PermissionDeniedError) as raised:
        await wrong.models.list()
    assert "not accepted" in str(raised.value)
    async with httpx.AsyncClient(base_url=str(http.base_url)) as bare:
        error = _error(await bare.get("/v1/models"))
    assert error["type"] == "authentication_error" and "Bearer" in error["message"]
    assert error["code"] == "unauthenticated"


async def test_bad_requests_are_400_with_a_message(api, clip):
    _, client, http = api
    upload, _ = clip
    with pytest.raises(openai.BadRequestError) as raised:
        await client.audio.transcriptions.create(
            model="whisper-1", file=upload, response_format="docx"
        )
    assert "response_format" in str(raised.value)
    not_multipart = await http.post("/v1/audio/transcriptions", json={"model": "whisper-1"})
    assert not_multipart.status_code == 400
    assert "multipart/form-data" in _error(not_multipart)["message"]
    no_file = await http.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                              files={"other": ("a.txt", b"x")})  # fmt: skip
    assert no_file.status_code == 400 and _error(no_file)["param"] == "file"
    not_audio = await http.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1"},
        files={"file": ("a.wav", b"this is not audio at all")},
    )  # fmt: skip
    assert not_audio.status_code == 400, not_audio.text
    english_only = await http.post(
        "/v1/audio/transcriptions", data={"model": "tiny.en", "language": "de"},
        files={"file": upload},
    )  # fmt: skip
    assert english_only.status_code == 400 and "English only" in _error(english_only)["message"]
    bad_speed = await http.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "x", "speed": 9}
    )
    assert bad_speed.status_code == 400 and _error(bad_speed)["param"] == "speed"
    empty = await http.post("/v1/audio/speech",
                            json={"model": "tts-1", "voice": "alloy", "input": "  "})  # fmt: skip
    assert empty.status_code == 400 and "empty" in _error(empty)["message"]


async def test_unknown_voice_model_and_route_are_404(api):
    _, client, http = api
    no_route = await http.get("/v1/audio/nothing")
    assert no_route.status_code == 404 and _error(no_route)["code"] == "unknown_url"
    wrong_method = await http.get("/v1/audio/speech")
    assert wrong_method.status_code == 405 and _error(wrong_method)["message"]
    with pytest.raises(openai.NotFoundError) as raised:
        await client.audio.speech.create(model="tts-1", voice="nobody", input="Hello.")
    assert "nobody" in str(raised.value)
    with pytest.raises(openai.NotFoundError):
        await client.audio.speech.create(model="tts-9", voice="alloy", input="Hello.")
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-5")


async def _raw_exchange(base_url: str, head: bytes, body: bytes) -> bytes:
    """Sends ``head`` and ``body`` on a bare connection, then reads until it closes."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()


async def test_an_oversized_upload_is_413_before_it_is_read(api):
    _, _, http = api
    cap = int(UPLOAD_CAP_MB * 2**20)
    head = (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
    )
    # A declared length over the cap: answered at once, with not a byte of the body sent
    # (what a client that sends "Expect: 100-continue", as curl does, sees).
    declared = await _raw_exchange(
        str(http.base_url), f"{head}Content-Length: {cap + 1}\r\n\r\n".encode(), b""
    )
    status, _, rest = declared.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large", declared[:200]
    assert b'"code": "request_too_large"' in rest and b"MiB" in rest
    # No length (chunked): counted as it arrives, refused once past the cap.
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    part += b"\0" * (cap + 1)
    chunked = await _raw_exchange(
        str(http.base_url),
        f"{head}Transfer-Encoding: chunked\r\n\r\n".encode(),
        f"{len(part):x}\r\n".encode() + part + b"\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413 "), chunked[:200]
    assert b"request_too_large" in chunked
    # Under the cap, the same route works.
    ok = await http.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1"},
        files={"file": ("a.wav", wav_bytes(np.zeros(16_000, np.float32)))},
    )  # fmt: skip
    assert ok.status_code == 200, ok.text


async def test_over_the_memory_budget_is_429_with_retry_after(api):
    _, client, http = api
    noise = np.random.default_rng(7).uniform(-0.1, 0.1, 16_000 * 14).astype(np.float32)
    wav = wav_bytes(noise)  # 448 KB: about 6 MiB to decode, over the 4 MiB budget
    assert len(wav) < UPLOAD_CAP_MB * 2**20
    response = await http.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("n.wav", wav)}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    error = _error(response)
    assert error["type"] == "rate_limit_error" and "memory_budget_mb" in error["message"]
    with pytest.raises(openai.RateLimitError):
        await client.audio.transcriptions.create(model="whisper-1", file=("n.wav", wav))


async def test_grpc_status_of_the_same_refusal_matches(api):
    """The gRPC door refuses the same over-budget audio with RESOURCE_EXHAUSTED."""
    server, _, _ = api
    noise = np.random.default_rng(8).uniform(-0.1, 0.1, 16_000 * 14).astype(np.float32)
    async with server.channel() as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Transcribe(
                stt_pb2.TranscribeRequest(audio=wav_bytes(noise)),
                metadata=[("authorization", f"Bearer {TOKEN}")],
            )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_kept_alive_requests_do_not_wait_for_delayed_acks(api):
    """With Nagle's algorithm on, each response waited ~40 ms for the client's delayed ACK
    (the door's socket must say IPPROTO_TCP for asyncio to set TCP_NODELAY)."""
    _, _, http = api
    latencies = []
    for _ in range(9):
        response = await http.get("/healthz")
        assert response.status_code == 200
        latencies.append(response.elapsed.total_seconds())
    assert sorted(latencies)[4] < 0.030, latencies


async def test_a_deadline_header_is_the_requests_deadline(api):
    """X-Request-Timeout gives the request a deadline, as gRPC's does: audio that cannot be
    transcribed in 1 ms is refused (admission: 429; or expired in the queue: 504), never
    computed late; a header that is not seconds is 400."""
    _, _, http = api
    audio = wav_bytes(np.random.default_rng(9).uniform(-0.1, 0.1, 16_000 * 3).astype(np.float32))
    late = await http.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1"},
        files={"file": ("n.wav", audio)}, headers={"x-request-timeout": "0.001"},
    )  # fmt: skip
    assert late.status_code in (429, 504), late.text
    assert _error(late)["code"] in ("resource_exhausted", "deadline_exceeded")
    bad = await http.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Hi."},
        headers={"x-request-timeout": "soon"},
    )  # fmt: skip
    assert bad.status_code == 400 and _error(bad)["param"] == "x-request-timeout"


async def test_refusals_are_answered_not_logged_as_crashes(api, caplog):
    """A refused request is an answer: nothing reaches the log as an unhandled error."""
    _, _, http = api
    with caplog.at_level(logging.ERROR):
        response = await http.post(
            "/v1/audio/transcriptions", data={"model": "whisper-1"},
            files={"file": ("a.wav", b"not audio")},
        )  # fmt: skip
    assert response.status_code == 400
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
