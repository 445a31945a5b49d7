"""Fixtures shared by every test area: real recorded speech and Redis."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.fetch.testdata import testdata_dir

ROOT = Path(__file__).resolve().parent.parent

if importlib.util.find_spec("tests.support.redis") is not None:
    pytest_plugins = ["tests.support.redis"]


@dataclass(frozen=True)
class Clip:
    path: Path
    reference: str


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    return testdata_dir()


@pytest.fixture(scope="session")
def librivox_clips(speech_dir: Path) -> list[Clip]:
    """The five LibriVox recordings (16 kHz mono WAV) with their reference transcripts."""
    clips = []
    for line in (speech_dir / "librivox" / "transcription").read_text().splitlines():
        text, _, name = line.rpartition("(")
        words = text.replace("<s>", "").replace("</s>", "").split()
        clips.append(Clip(speech_dir / "librivox" / f"{name.strip(' )')}.wav", " ".join(words)))
    return clips


@pytest.fixture(scope="session")
def goforward(speech_dir: Path) -> Clip:
    """Raw 16 kHz s16le speech: 'go forward ten meters'."""
    return Clip(speech_dir / "goforward.raw", "go forward ten meters")
