"""Fewer malloc heaps, so a server's resident size follows its work.

glibc gives each thread that allocates its own heap ("arena"), up to eight per core, and a
heap keeps the high-water mark of the threads that used it. A speech server has many such
threads (gRPC, one per model instance, asyncio's executor), and Whisper's decoder allocates
and frees buffers of a few MB per step on each of them. Measured with ``python -m tools.bench`` (STT
server, 16 clients, interleaved runs): peak RSS 782-799 MB with glibc's default, 635-665 MB
with two arenas, at the same CPU time per request (720-777 ms vs 797-799 ms).

Pinning malloc's mmap threshold instead (so every large block goes back to the OS) cut
more, but made every model call map and fault in its buffers afresh: STT CPU per request
+30 %, Piper without onnxruntime's arena -46 %. So only the arena count is limited.

``MALLOC_ARENA_MAX`` in the environment does the same; doing it here means every way of
starting a server gets it. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: mallopt parameter (glibc's malloc.h).
_M_ARENA_MAX = -8


def limit_malloc_arenas(count: int) -> bool:
    """Caps glibc's heaps at ``count``; True when it took effect. Call it before the
    threads that allocate start (arenas already made stay)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to set
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_ARENA_MAX, count))
    log.debug("malloc arenas limited", extra={"arenas": count, "ok": done})
    return done
