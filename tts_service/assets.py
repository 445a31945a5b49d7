"""Where the TTS model files are, at run time. The server only reads them.

The files are built once by the setup (``python -m tools.assets``, run by scripts/bootstrap.sh):
the Kokoro-82M int8 model assembled from its registry parts, its English voices in one
``.npz``, and the Piper voice re-saved with its duration output. Each folder holds a
``manifest.json`` that says what was built from what; here it is only read, and a missing or
incomplete folder is a clear error that names the command that builds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KOKORO_MODEL_FILE = "kokoro-v1.0.int8.onnx"
#: The graph's frames-per-token tensor, which the setup exposes as a second output.
KOKORO_DURATIONS_OUTPUT = "/encoder/Clip_output_0"
KOKORO_VOICES_FILE = "voices-en.npz"
PIPER_VOICE = "en_US-joe-medium"
MANIFEST_FILE = "manifest.json"
#: Bump (here and so in tools/assets) when the layout of the built files changes.
LAYOUT_VERSION = 1
BUILD_COMMAND = "bash scripts/bootstrap.sh (or: python -m tools.assets --model-dir DIR)"


class AssetError(RuntimeError):
    """A model file is missing, incomplete, or failed verification."""


@dataclass(frozen=True)
class KokoroAssets:
    model_path: Path
    voices_path: Path
    model_sha256: str
    #: SHA-256 of the kokoro-js tarball the voices came from.
    voices_sha256: str


@dataclass(frozen=True)
class PiperAssets:
    model_path: Path
    config_path: Path
    #: SHA-256 of the voice as published (the cache key's model version).
    model_sha256: str


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sizes_match(directory: Path, sizes: dict[str, int]) -> bool:
    return bool(sizes) and all(
        (directory / name).is_file() and (directory / name).stat().st_size == size
        for name, size in sizes.items()
    )


def _built(directory: Path, what: str) -> dict[str, Any]:
    """The manifest of a complete build in ``directory``, or an AssetError saying what to run."""
    manifest = read_manifest(directory)
    if manifest.get("layout") != LAYOUT_VERSION or not sizes_match(
        directory, manifest.get("sizes", {})
    ):
        raise AssetError(
            f"the {what} model files in {directory} are missing or incomplete; "
            f"build them with: {BUILD_COMMAND}"
        )
    return manifest


def kokoro_assets(model_dir: Path) -> KokoroAssets:
    """The built Kokoro model and English voices under ``model_dir/kokoro``."""
    directory = model_dir / "kokoro"
    manifest = _built(directory, "Kokoro")
    return KokoroAssets(
        directory / KOKORO_MODEL_FILE,
        directory / KOKORO_VOICES_FILE,
        str(manifest["model_sha256"]),
        str(manifest["voices_source_sha256"]),
    )


def piper_assets(model_dir: Path) -> PiperAssets:
    """The built Piper voice (with its duration output) under ``model_dir/piper``."""
    directory = model_dir / "piper"
    manifest = _built(directory, "Piper")
    return PiperAssets(
        directory / f"{PIPER_VOICE}.onnx",
        directory / f"{PIPER_VOICE}.onnx.json",
        str(manifest["source_sha256"]),
    )
