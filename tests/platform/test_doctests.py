"""The examples in the product's docstrings run, so they cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("batcher", "speech_platform", "stt_service", "tts_service", "speech_jobs",
            "speech_server")


def _modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>> " in path.read_text(encoding="utf-8"):
                dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                names.append(dotted.removesuffix(".__init__"))
    return names


MODULES = _modules_with_examples()


def test_the_walk_finds_the_examples() -> None:
    assert {"batcher.adaptive", "speech_platform.config", "tts_service.text"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
