"""The HTTP door loads no engine library: a TTS-only server with it never loads
CTranslate2 or faster-whisper, an STT-only one never loads onnxruntime or Piper."""

from __future__ import annotations

import subprocess
import sys


def test_the_http_door_imports_no_engine_library():
    code = (
        "import sys\n"
        "import speech_http.app, speech_http.door\n"
        "heavy = ('av', 'ctranslate2', 'faster_whisper', 'onnxruntime', 'kokoro_onnx', 'piper')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
