"""Recorded speech for the STT tests, decoded once per session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest

from tests.stt.media import read_raw16, read_wav
from tests.support.server import RunningServer, running_server


@dataclass(frozen=True)
class SpeechClip:
    name: str
    samples: np.ndarray
    reference: str
    #: The file as a caller would send it: WAV for LibriVox, raw s16le for goforward.
    payload: bytes
    raw: bool

    @property
    def duration_s(self) -> float:
        return len(self.samples) / 16000


@pytest.fixture(scope="session")
def speech_clips(librivox_clips, goforward) -> list[SpeechClip]:
    """The five LibriVox clips and goforward.raw, with their reference transcripts."""
    clips = [
        SpeechClip(c.path.stem[-4:], read_wav(c.path), c.reference, c.path.read_bytes(), False)
        for c in librivox_clips
    ]
    clips.append(
        SpeechClip(
            "goforward",
            read_raw16(goforward.path),
            goforward.reference,
            goforward.path.read_bytes(),
            True,
        )
    )
    return clips


@pytest.fixture(scope="session")
def recordings(speech_clips, speech_dir) -> dict[str, np.ndarray]:
    """Every real recording at hand (16 kHz mono), by name: LibriVox sentences, card
    names, commands and digit strings of 1-7 s, plus three built from them: 26 s of
    LibriVox, exactly 30.0 s ending in mid-speech, and 60 s."""
    found = {clip.name: clip.samples for clip in speech_clips}
    for path in sorted((speech_dir / "cards").glob("*.wav")):
        found[f"cards-{path.stem}"] = read_wav(path)
    for name in ("numbers", "something"):
        found[name] = read_raw16(speech_dir / f"{name}.raw")
    found["digits"] = read_raw16(speech_dir / "tidigits" / "dhd.2934z.raw")
    librivox = [clip.samples for clip in speech_clips[:5]]
    pause = np.zeros(int(0.3 * 16000), np.float32)
    sentences = np.concatenate([part for clip in librivox for part in (clip, pause)])
    found["librivox-26s"] = sentences
    found["exactly-30s"] = np.concatenate([sentences, sentences])[: 30 * 16000]
    found["librivox-60s"] = np.concatenate([sentences] * 3)[: 60 * 16000]
    return found


@pytest.fixture(scope="session")
async def stt_server() -> AsyncIterator[RunningServer]:
    """The real server with STT (tiny.en, default settings: in-process cache, two
    instances), shared by the streaming and voice-agent tests."""
    async with running_server(services=["stt"]) as server:
        yield server
