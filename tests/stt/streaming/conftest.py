"""Recorded speech joined into live streams (the shared server is in tests/stt/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import Clip
from tests.stt.streaming.speech import SpokenStream, join_clips, read_wav_pcm16


@pytest.fixture(scope="session")
def librivox_pcm(librivox_clips: list[Clip]) -> list[tuple[np.ndarray, str]]:
    """The five LibriVox clips as 16 kHz s16le samples, with their reference text."""
    return [(read_wav_pcm16(clip.path), clip.reference) for clip in librivox_clips]


@pytest.fixture(scope="session")
def spoken(librivox_pcm: list[tuple[np.ndarray, str]]) -> SpokenStream:
    """All five clips with 1 s pauses between them (about 30 s)."""
    return join_clips(librivox_pcm, pause_s=1.0)

