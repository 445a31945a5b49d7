"""The requests a benchmark sends: recorded speech of mixed lengths and interview texts.

Speech comes from Debian's pocketsphinx-testdata (five LibriVox clips of 3-7 s with reference
transcripts, and goforward.raw). Longer clips (up to just under Whisper's 30 s window) are
made by joining the recordings with short pauses, so the mix spans 3-30 s as real traffic
does, and every clip still has an exact reference for WER.
"""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from speech.v1 import common_pb2, stt_pb2, tts_pb2
from tools.bench.texts import INTERVIEW_TEXTS, KOKORO_TEXTS

SAMPLE_RATE = 16_000
_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = (
    Path("/usr/share/pocketsphinx/test/data"),
    _ROOT / ".venv" / "share" / "testdata" / "pocketsphinx",
)
#: Target lengths (s) of the joined clips (each ends within 1.5 s above its target, never
#: past _MAX_CLIP_S, so the longest stays inside one 30 s Whisper window).
JOINED_TARGETS_S = (10.0, 14.0, 18.0, 22.0, 26.0, 28.0)
_GAP_S = 0.25
_MAX_CLIP_S = 29.5


@dataclass(frozen=True)
class Clip:
    name: str
    #: 16 kHz mono int16 samples.
    pcm: np.ndarray
    reference: str

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / SAMPLE_RATE

    def wav_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(self.pcm.astype("<i2").tobytes())
        return buffer.getvalue()


@dataclass(frozen=True)
class Request:
    """One prepared call: the serialized request and what it carries."""

    payload: bytes
    #: Seconds of input audio (STT); 0 for synthesis.
    audio_s: float
    #: Reference transcript for WER (STT only).
    reference: str | None = None
    label: str = ""


def testdata_dir() -> Path:
    """Where the recordings are: SPEECH_BENCH_TESTDATA, the system package or .venv/share.

    Falls back to the project's fetch script (which downloads the Debian package once).
    """
    override = os.environ.get("SPEECH_BENCH_TESTDATA")
    candidates = (Path(override),) if override else _CANDIDATES
    for candidate in candidates:
        if (candidate / "librivox" / "transcription").exists():
            return candidate
    from tools.fetch.testdata import testdata_dir as fetch_testdata_dir

    return fetch_testdata_dir()


@lru_cache(maxsize=1)
def recorded_clips() -> tuple[Clip, ...]:
    """The six recordings as they are: five LibriVox sentences and "go forward ten meters"."""
    root = testdata_dir()
    references: dict[str, str] = {}
    for line in (root / "librivox" / "transcription").read_text().splitlines():
        if "(" not in line:
            continue
        text, _, rest = line.rpartition("(")
        words = [w for w in text.split() if w not in ("<s>", "</s>")]
        references[rest.rstrip(")").strip()] = " ".join(words)
    clips = []
    for name in sorted(references):
        with wave.open(str(root / "librivox" / f"{name}.wav"), "rb") as wav:
            if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1:
                raise ValueError(f"{name}: expected 16 kHz mono")
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        clips.append(Clip(name, pcm, references[name]))
    raw = np.frombuffer((root / "goforward.raw").read_bytes(), dtype="<i2")
    clips.append(Clip("goforward", raw, "go forward ten meters"))
    return tuple(clips)


def _join(parts: list[Clip], name: str) -> Clip:
    gap = np.zeros(int(_GAP_S * SAMPLE_RATE), dtype=np.int16)
    pieces: list[np.ndarray] = []
    for part in parts:
        if pieces:
            pieces.append(gap)
        pieces.append(part.pcm)
    return Clip(name, np.concatenate(pieces), " ".join(p.reference for p in parts))


@lru_cache(maxsize=1)
def mixed_clips() -> tuple[Clip, ...]:
    """Recordings plus joined clips, interleaved short/long: lengths from 2.8 s to 29.5 s."""
    recorded = recorded_clips()
    joined: list[Clip] = []
    cursor = 0
    for target in JOINED_TARGETS_S:
        parts: list[Clip] = []
        length = 0.0
        while True:
            candidate = recorded[cursor % len(recorded)]
            extra = candidate.duration_s + (_GAP_S if parts else 0.0)
            if parts and length + extra > min(target + 1.5, _MAX_CLIP_S):
                break
            parts.append(candidate)
            length += extra
            cursor += 1
        joined.append(_join(parts, f"joined-{target:g}s"))
    mixed: list[Clip] = []
    for short, long in zip(recorded, joined, strict=False):
        mixed += [short, long]
    return tuple(mixed)


def five_second_clip() -> Clip:
    """Exactly 5 s of speech (the cache-hit scenario's request; cut mid-sentence, so it has
    no reference transcript and no WER)."""
    first = recorded_clips()[0]
    if first.duration_s < 5.0:
        raise ValueError("expected a recording of at least 5 s")
    return Clip("five-seconds", first.pcm[: 5 * SAMPLE_RATE], "")


# -- requests --------------------------------------------------------------------------------


def transcribe_request(clip: Clip, *, skip_cache: bool = True) -> Request:
    request = stt_pb2.TranscribeRequest(
        config=stt_pb2.RecognitionConfig(language_code="en", skip_cache=skip_cache),
        audio=clip.wav_bytes(),
    )
    return Request(
        request.SerializeToString(), clip.duration_s, clip.reference or None, clip.name
    )


def stt_requests(*, skip_cache: bool = True) -> list[Request]:
    return [transcribe_request(c, skip_cache=skip_cache) for c in mixed_clips()]


def null_requests() -> list[Request]:
    """Tiny requests (0.1 s of raw audio) so the null engine measures the serving path only."""
    pcm = recorded_clips()[-1].pcm[: SAMPLE_RATE // 10]
    request = stt_pb2.TranscribeRequest(
        config=stt_pb2.RecognitionConfig(
            encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=SAMPLE_RATE,
            language_code="en",
            skip_cache=True,
        ),
        audio=pcm.astype("<i2").tobytes(),
    )
    return [Request(request.SerializeToString(), len(pcm) / SAMPLE_RATE, None, "null")]


def synthesize_request(text: str, tier: int, *, skip_cache: bool = True) -> Request:
    request = tts_pb2.SynthesizeRequest(
        text=text,
        tier=tier,  # type: ignore[arg-type]
        disable_fallback=True,
        skip_cache=skip_cache,
        audio_config=tts_pb2.AudioConfig(encoding=common_pb2.AUDIO_ENCODING_WAV),
    )
    return Request(request.SerializeToString(), 0.0, None, text[:32])


def tts_texts(engine: str) -> tuple[str, ...]:
    return KOKORO_TEXTS if engine == "kokoro" else INTERVIEW_TEXTS


def tts_requests(engine: str, *, skip_cache: bool = True) -> list[Request]:
    tier = tts_pb2.VOICE_TIER_HIGH if engine == "kokoro" else tts_pb2.VOICE_TIER_STANDARD
    return [synthesize_request(t, tier, skip_cache=skip_cache) for t in tts_texts(engine)]
