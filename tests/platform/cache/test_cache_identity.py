"""Response-cache keys cover what produced the output, not only what was asked: the model
weights, the device and numeric setup, and the engine's release, for STT and TTS. Real
engines are loaded (Whisper tiny.en, Piper) and their keys compared with one part changed."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from speech.v1 import common_pb2, stt_pb2
from speech_platform.config import SttSettings, load_settings
from speech_platform.fingerprint import files_digest
from stt_service.assets import model_path
from stt_service.options import DecodeOptions
from stt_service.transcriber import LoadedModel, ResolvedOptions, Transcriber
from stt_service.unary import transcription_cache_key
from tts_service.audio_encoding import resolve_output
from tts_service.piper_engine import PiperEngine
from tts_service.results import SynthesisRequest
from tts_service.synthesizer import synthesis_cache_key


@pytest.fixture(scope="module")
async def whisper() -> AsyncIterator[LoadedModel]:
    transcriber = Transcriber(SttSettings(instances=1))
    await transcriber.start()
    try:
        yield transcriber.model()
    finally:
        await transcriber.stop(0)


def stt_key(model: LoadedModel) -> str:
    request = stt_pb2.TranscribeRequest(audio=b"RIFF same audio")
    return transcription_cache_key(
        request, ResolvedOptions(model=model, decode=DecodeOptions("en", 5))
    )


async def test_stt_keys_differ_in_weights_device_compute_type_and_engine(
    whisper: LoadedModel,
) -> None:
    assert whisper.weights_digest == files_digest(model_path("tiny.en"))
    assert "ctranslate2 " in whisper.engine_version
    base = stt_key(whisper)
    assert stt_key(dataclasses.replace(whisper)) == base  # stable for the same setup
    variants = {
        "weights": dataclasses.replace(whisper, weights_digest="0" * 64),
        "device": dataclasses.replace(whisper, device="cuda"),
        "compute_type": dataclasses.replace(whisper, compute_type="float16"),
        "engine": dataclasses.replace(whisper, engine_version="ctranslate2 99.0.0"),
    }
    keys = {name: stt_key(model) for name, model in variants.items()}
    assert base not in keys.values() and len(set(keys.values())) == len(keys), keys


def test_weights_digest_sees_a_changed_model_but_not_a_copy(tmp_path: Path) -> None:
    source = model_path("tiny.en")
    copied = tmp_path / "copy"
    shutil.copytree(source, copied)
    assert files_digest(copied) == files_digest(source)  # mtimes differ; content does not
    weights = copied / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle of the tensors
    weights.write_bytes(bytes(data))
    assert files_digest(copied) != files_digest(source)


def test_tts_keys_differ_in_weights_and_runtime() -> None:
    settings = load_settings()
    piper = PiperEngine(settings.tts, settings.model_dir)
    piper.load()
    assert len(piper.model_version) == 64
    assert "onnxruntime " in piper.runtime and "CPUExecutionProvider" in piper.runtime
    plan: Any = SimpleNamespace(
        request=SynthesisRequest(text="Hello there."),
        voice=piper.voices()[0],
        normalized="Hello there.",
        speaking_rate=1.0,
        gain_db=0.0,
    )
    output = resolve_output(common_pb2.AUDIO_ENCODING_WAV, 0, piper.sample_rate)

    def key(engine: PiperEngine) -> str:
        return synthesis_cache_key(engine, cast(Any, plan), output)

    base = key(piper)
    other_weights = copy.copy(piper)
    other_weights.model_version = "f" * 64
    on_gpu = copy.copy(piper)
    on_gpu.runtime = piper.runtime.replace("CPUExecutionProvider", "CUDAExecutionProvider")
    newer = copy.copy(piper)
    newer.runtime = "piper-tts 9.9.9, onnxruntime 9.9.9; CPUExecutionProvider"
    keys = [key(e) for e in (other_weights, on_gpu, newer)]
    assert base not in keys and len(set(keys)) == 3
