"""What keeps a server's resident memory small: fewer malloc heaps, and a server loads
only the libraries its configuration uses (see speech_platform/memory.py)."""

from __future__ import annotations

import subprocess
import sys

from speech_platform.memory import limit_malloc_arenas


def test_malloc_arenas_are_limited_on_glibc() -> None:
    assert limit_malloc_arenas(2) is True


def test_a_tts_server_without_redis_loads_neither_redis_nor_pyav() -> None:
    code = (
        "import sys\n"
        "from speech_platform.cache.factory import build_cache\n"
        "from speech_platform.config import CacheSettings\n"
        "import speech_server.server, tts_service.service, tts_service.synthesizer\n"
        "from tts_service.audio_encoding import AudioPipeline, Encoding, resolve_output\n"
        "assert build_cache(CacheSettings(backend='memory')) is not None\n"
        "wav = resolve_output(Encoding.WAV, 0, 22050)\n"
        "pipeline = AudioPipeline(22050, wav, 0.0, streaming=False)\n"
        "pipeline.push(__import__('numpy').zeros(2205, dtype='float32'))\n"
        "print(sorted(m for m in ('redis', 'av', 'ctranslate2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
