"""A real fault to inject: a model directory whose Kokoro voices include a corrupt one.

The model files are the real ones (linked); the voices archive is the real one plus
``af_broken``, a style table of the wrong width, as a truncated download would leave it. The
real Kokoro graph then fails on that voice, and only on that voice.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from tts_service import assets

BROKEN_VOICE = "af_broken"


def model_dir_with_broken_voice(real: Path, target: Path) -> Path:
    for engine in ("piper", "kokoro"):
        (target / engine).mkdir(parents=True, exist_ok=True)
        for source in (real / engine).iterdir():
            if source.name not in (assets.MANIFEST_FILE, assets.KOKORO_VOICES_FILE):
                (target / engine / source.name).symlink_to(source)
    (target / "piper" / assets.MANIFEST_FILE).write_text(
        (real / "piper" / assets.MANIFEST_FILE).read_text()
    )
    with np.load(real / "kokoro" / assets.KOKORO_VOICES_FILE) as archive:
        voices = {name: archive[name] for name in archive.files}
    voices[BROKEN_VOICE] = np.zeros((510, 1, 255), np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **voices)
    voices_path = target / "kokoro" / assets.KOKORO_VOICES_FILE
    voices_path.write_bytes(buffer.getvalue())
    manifest = json.loads((real / "kokoro" / assets.MANIFEST_FILE).read_text())
    manifest["sizes"][assets.KOKORO_VOICES_FILE] = voices_path.stat().st_size
    (target / "kokoro" / assets.MANIFEST_FILE).write_text(json.dumps(manifest))
    return target
