"""Speech in other languages for the multilingual tests, synthesized by eSpeak NG.

The recorded test speech is English only. eSpeak NG (its library ships in PyPI
``espeakng-loader``, a dependency of the TTS engines) speaks dozens of languages; its voice
is robotic, but Whisper base recognises the language and most of the words.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import espeakng_loader
import numpy as np

from stt_service.audio import resample_mono

_SYNCHRONOUS = 0x02  # AUDIO_OUTPUT_SYNCHRONOUS
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_lock = threading.Lock()


def synthesize(text: str, voice: str) -> np.ndarray:
    """``text`` spoken by eSpeak NG's ``voice`` ("de", "fr", ...), as 16 kHz mono float32."""
    with _lock:  # eSpeak NG keeps global state
        library = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        rate = library.espeak_Initialize(
            _SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        pieces: list[np.ndarray] = []

        def collect(wav: Any, count: int, _events: int) -> int:
            if count > 0:
                pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            return 0

        callback = _CALLBACK(collect)
        library.espeak_SetSynthCallback(callback)
        if library.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        encoded = text.encode()
        status = library.espeak_Synth(
            ctypes.c_char_p(encoded),
            ctypes.c_size_t(len(encoded) + 1),
            ctypes.c_uint(0),
            ctypes.c_int(_POS_CHARACTER),
            ctypes.c_uint(0),
            ctypes.c_uint(_CHARS_UTF8),
            None,
            None,
        )
        library.espeak_Synchronize()
        if status != 0 or not pieces:
            raise RuntimeError(f"eSpeak NG synthesis failed ({status})")
    audio = np.concatenate(pieces).astype(np.float32) / 32768.0
    return resample_mono(audio, rate)
