"""Give freed memory back to the OS, so a server's resident size follows its work.

glibc serves allocations above a threshold with their own ``mmap`` (returned to the OS on
``free``), but it raises that threshold each time such a block is freed, up to 32 MiB. Model
runtimes allocate their activations (tens of MB per call, sized by the input) and free them
after every call; after a few calls glibc keeps them on its heaps instead, and each thread's
heap holds on to its high-water mark. Measured with two Piper runners on the benchmark texts:
peak RSS 395 MB with the default, 297 MB with the threshold pinned at 256 KiB, at the same
speed (an ``mmap`` per call costs microseconds against calls of tens of milliseconds).

Pinning is what ``MALLOC_MMAP_THRESHOLD_`` in the environment does; doing it here means every
way of starting a server gets it. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Above this, allocations get their own mapping and go back to the OS when freed.
MMAP_THRESHOLD_BYTES = 256 * 1024


def return_freed_memory(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pins glibc's mmap and trim thresholds; True when it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to pin
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    done = bool(mallopt(_M_TRIM_THRESHOLD, threshold_bytes)) and done
    log.debug("malloc thresholds pinned", extra={"bytes": threshold_bytes, "ok": done})
    return done
