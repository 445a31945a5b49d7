"""The run-time side of the Whisper assets: located, never assembled at run time."""

from __future__ import annotations

import pytest

from speech_platform.config import load_settings
from stt_service import assets


def test_both_models_are_found_after_the_setup():
    assert (assets.model_path("tiny.en") / "model.bin").is_file()
    base = assets.model_path("base", load_settings().model_dir)
    assert all((base / name).is_file() for name in assets.BASE_FILES)


def test_an_unassembled_base_model_is_a_clear_error(tmp_path):
    with pytest.raises(assets.ModelNotBuiltError, match=r"tools\.assets"):
        assets.model_path("base", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_model_is_refused():
    with pytest.raises(assets.UnknownModelError):
        assets.model_path("large-v3")
