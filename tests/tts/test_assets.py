"""The run-time side of the TTS assets: it locates what the setup built, and builds nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speech_platform.config import load_settings
from tts_service import assets


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return load_settings().model_dir


def test_the_built_files_are_found(model_dir):
    kokoro = assets.kokoro_assets(model_dir)
    assert kokoro.model_path.name == assets.KOKORO_MODEL_FILE and kokoro.model_path.is_file()
    assert kokoro.voices_path.is_file()
    assert len(kokoro.model_sha256) == 64 and len(kokoro.voices_sha256) == 64
    piper = assets.piper_assets(model_dir)
    assert piper.model_path.is_file() and piper.config_path.is_file()
    assert len(piper.model_sha256) == 64


def test_a_missing_model_directory_is_a_clear_error_that_names_the_setup(tmp_path):
    for locate in (assets.kokoro_assets, assets.piper_assets):
        with pytest.raises(assets.AssetError, match=r"tools\.assets"):
            locate(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing is built at run time


def test_an_incomplete_build_is_refused(model_dir, tmp_path):
    shutil.copytree(model_dir / "piper", tmp_path / "piper")
    assert assets.piper_assets(tmp_path).model_path.parent == tmp_path / "piper"
    manifest = json.loads((tmp_path / "piper" / assets.MANIFEST_FILE).read_text())
    (tmp_path / "piper" / next(iter(manifest["sizes"]))).write_bytes(b"truncated")
    with pytest.raises(assets.AssetError, match="missing or incomplete"):
        assets.piper_assets(tmp_path)


def test_the_runtime_module_has_no_build_code():
    source = Path(assets.__file__).read_text()
    for word in ("urllib", "npm pack", "subprocess", "onnx.save", "hashlib"):
        assert word not in source
