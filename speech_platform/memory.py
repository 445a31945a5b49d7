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

Even with two arenas, a burst leaves the heaps at their high-water mark: free, but not
given back (glibc returns only the top of a heap by itself). ``IdleTrim`` calls
``malloc_trim`` once the burst is over (no request holds any of the memory budget), so the
resident size falls back towards idle instead of staying at the burst's peak. It runs the
garbage collector first: a refused or failed request's exception keeps its frames, and so
its request (audio of up to 25 MiB), in a reference cycle that an idle process may not
collect for a long time; after 16 refused 30 MiB uploads that was ~500 MB no trim could
give back until a collection freed it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

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


def trim_free_memory() -> bool:
    """Gives the free pages of every malloc heap back to the OS; True when glibc did."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        malloc_trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return bool(malloc_trim(0))


class IdleTrim:
    """Trims the heaps once after each stretch of work, when nothing is in flight.

    ``activity()`` grows with work (the memory budget's reservation count); ``busy()`` is
    true while requests hold memory. Every ``interval_s`` it looks: work happened since the
    last trim and none is in flight now, so the freed memory of that work goes back, in a
    thread (a trim of a large heap takes milliseconds; the event loop never waits on it).
    """

    def __init__(
        self, activity: Callable[[], int], busy: Callable[[], bool], interval_s: float
    ) -> None:
        self._activity = activity
        self._busy = busy
        self.interval_s = interval_s
        self.trims = 0
        self._seen = activity()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)  # a period, not synchronisation
            now = self._activity()
            if now != self._seen and not self._busy():
                await asyncio.to_thread(_collect_and_trim)
                self.trims += 1
                self._seen = now


def _collect_and_trim() -> None:
    gc.collect()
    trim_free_memory()
