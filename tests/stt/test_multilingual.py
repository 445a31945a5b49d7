"""The multilingual base model next to tiny.en: selection by name, language detection."""

from __future__ import annotations

import grpc
import pytest
import pytest_asyncio

from speech.v1 import stt_pb2, stt_pb2_grpc
from tests.stt.espeak import synthesize
from tests.stt.media import wav_bytes, wer
from tests.support.server import running_server
from tests.support.server import test_settings as server_settings

pytestmark = pytest.mark.slow

GERMAN = "Guten Morgen. Heute ist das Wetter in Berlin sehr schön, und wir gehen in den Park."


@pytest_asyncio.fixture(scope="module")
async def stub():
    settings = server_settings(["stt"])
    settings.stt.models = ["tiny.en", "base"]
    settings.stt.default_model = "tiny.en"
    settings.stt.instances = 1
    settings.stt.cpu_threads = 2
    async with running_server(settings) as server, server.channel() as channel:
        yield stt_pb2_grpc.SpeechToTextStub(channel)


@pytest.fixture(scope="module")
def german_wav() -> bytes:
    return wav_bytes(synthesize(GERMAN, "de"))


def _request(audio: bytes, **config) -> stt_pb2.TranscribeRequest:
    return stt_pb2.TranscribeRequest(
        audio=audio, config=stt_pb2.RecognitionConfig(skip_cache=True, **config)
    )


async def test_both_models_are_listed(stub):
    models = {m.name: m for m in (await stub.ListModels(stt_pb2.ListModelsRequest())).models}
    assert set(models) == {"tiny.en", "base"}
    assert models["tiny.en"].is_default and not models["base"].is_default
    assert models["base"].multilingual and not models["tiny.en"].multilingual
    assert {"en", "de", "fr", "ja"} <= set(models["base"].languages)
    assert list(models["tiny.en"].languages) == ["en"]


async def test_base_detects_german(stub, german_wav):
    response = await stub.Transcribe(_request(german_wav, model="base"), timeout=120)
    print(
        f"base, auto: {response.language_code} p={response.language_probability:.2f} "
        f"{response.text!r}"
    )
    assert response.model == "base"
    assert response.language_code == "de"
    assert 0.5 < response.language_probability <= 1.0
    assert "guten morgen" in response.text.lower()
    assert "berlin" in response.text.lower()


async def test_base_detects_english_and_takes_a_given_language(stub, speech_clips):
    clip = speech_clips[0]
    detected = await stub.Transcribe(_request(clip.payload, model="base"), timeout=120)
    assert detected.language_code == "en" and detected.language_probability > 0.8
    assert wer(clip.reference, detected.text) <= 0.2
    given = await stub.Transcribe(
        _request(clip.payload, model="base", language_code="en-GB"), timeout=120
    )
    assert (given.language_code, given.language_probability) == ("en", 1.0)
    assert wer(clip.reference, given.text) <= 0.2


async def test_a_given_language_is_decoded_as_that_language(stub, german_wav):
    response = await stub.Transcribe(
        _request(german_wav, model="base", language_code="de-DE", enable_word_time_offsets=True),
        timeout=120,
    )
    assert (response.language_code, response.language_probability) == ("de", 1.0)
    assert "berlin" in response.text.lower()
    starts = [w.start_seconds for w in response.words]
    assert starts and starts == sorted(starts)


async def test_language_errors_name_the_way_out(stub, german_wav):
    with pytest.raises(grpc.aio.AioRpcError) as english_only:
        await stub.Transcribe(_request(german_wav, language_code="de"), timeout=30)
    assert english_only.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "English only" in english_only.value.details()
    assert "base" in english_only.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.Transcribe(_request(german_wav, model="base", language_code="qq"), timeout=30)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'qq' is not one of the languages" in unknown.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.Transcribe(_request(german_wav, model="small"), timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'tiny.en', 'base'" in missing.value.details()


#: eSpeak NG's Spanish; base translates it as "Good morning, today is a good time and we
#: are going to go to the park with the children."
SPANISH = "Buenos días. Hoy hace buen tiempo en Madrid y vamos a ir al parque con los niños."


async def test_the_translate_task_writes_english(stub):
    spanish = wav_bytes(synthesize(SPANISH, "es"))
    translated = await stub.Transcribe(
        _request(spanish, model="base", task="translate", enable_word_time_offsets=True),
        timeout=120,
    )
    text = translated.text.lower()
    assert "good morning" in text and "park" in text, translated.text
    assert translated.language_code == "es"  # the language spoken, not the one written
    assert [w.word.strip().lower().strip(",.") for w in translated.words][:2] == ["good", "morning"]
    transcribed = await stub.Transcribe(
        _request(spanish, model="base", task="transcribe"), timeout=120
    )
    assert "buenos días" in transcribed.text.lower()


async def test_task_errors_name_the_way_out(stub, german_wav):
    with pytest.raises(grpc.aio.AioRpcError) as english_only:
        await stub.Transcribe(_request(german_wav, task="translate"), timeout=30)
    assert english_only.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot translate" in english_only.value.details()
    assert "use base" in english_only.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.Transcribe(_request(german_wav, model="base", task="summarise"), timeout=30)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transcribe, translate" in unknown.value.details()
