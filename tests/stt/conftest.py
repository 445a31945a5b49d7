"""Recorded speech for the STT tests, decoded once per session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.stt.media import read_raw16, read_wav


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
