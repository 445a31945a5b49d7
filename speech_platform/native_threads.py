"""Process-wide thread settings a speech server needs: how many threads the native
libraries it loads may start for themselves, and how long the event loop waits for the GIL.

**BLAS threads.** NumPy's bundled OpenBLAS keeps a worker thread per core and, after each
matrix product it spreads over them, lets the workers spin for a while waiting for the
next. A server computes in its model instances' own threads (that is where its
parallelism is configured), and the products NumPy runs for it are small (Whisper's mel
filterbank); a spinning worker only takes CPU, at the priority of the thread that loaded
NumPy (the event loop's), not the models' lower one. ``limit_blas_threads`` makes every
BLAS in the process run on its caller's thread. Measured in docs/benchmarks.md
("Overload"): the worker was the server's busiest thread after the event loop, and
capping it raised a 2-core server's capacity by about a quarter.

**GIL hand-off.** A thread that wants the GIL waits up to ``sys.getswitchinterval()``
(5 ms by default) before it asks the holder to let go. The event loop takes the GIL after
every poll, and the threads around the models run Python between native calls (batch
assembly, decoding, phonemizing, encoding); gRPC hands the loop one new call per turn, so
under a burst every turn's wait delays every later arrival. ``favour_event_loop`` shortens
the wait (figures in docs/benchmarks.md, "Overload").
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol

from threadpoolctl import threadpool_info, threadpool_limits

log = logging.getLogger(__name__)


class ThreadSettings(Protocol):
    blas_threads: int
    gil_switch_interval_ms: float


def tune_native_threads(settings: ThreadSettings) -> None:
    """Applies both settings (0 leaves either as it is)."""
    if settings.blas_threads:
        limit_blas_threads(settings.blas_threads)
    if settings.gil_switch_interval_ms:
        favour_event_loop(settings.gil_switch_interval_ms / 1000.0)


def limit_blas_threads(threads: int) -> list[str]:
    """Caps every BLAS library loaded so far, NumPy's always included, at ``threads``;
    returns the libraries now at the cap."""
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS, so that it is among those capped)

    threadpool_limits(limits=threads, user_api="blas")
    capped = [
        str(library["filepath"])
        for library in threadpool_info()
        if library["user_api"] == "blas" and library["num_threads"] == threads
    ]
    log.debug("blas threads", extra={"threads": threads, "libraries": capped})
    return capped


def favour_event_loop(switch_interval_s: float) -> None:
    """Sets how long a thread waiting for the GIL lets the holder keep it."""
    sys.setswitchinterval(switch_interval_s)
