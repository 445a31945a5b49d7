"""How many threads the native libraries a speech server loads may start for themselves.

NumPy's bundled OpenBLAS keeps a worker thread per core and, after each
matrix product it spreads over them, lets the workers spin for a while waiting for the
next. A server computes in its model instances' own threads (that is where its
parallelism is configured), and the products NumPy runs for it are small (Whisper's mel
filterbank); a spinning worker only takes CPU, at the priority of the thread that loaded
NumPy (the event loop's), not the models' lower one. ``limit_blas_threads`` makes every
BLAS in the process run on its caller's thread. Measured in docs/benchmarks.md
("Overload"): the worker was the server's busiest thread after the event loop, and
capping it raised a 2-core server's capacity by about a quarter.

The event loop's own wait for the GIL behind model threads (CPython's 5 ms switch
interval) was measured too: 0.5 ms made refusals no faster, so it is left alone.
"""

from __future__ import annotations

import logging
from typing import Protocol

from threadpoolctl import threadpool_info, threadpool_limits

log = logging.getLogger(__name__)


class ThreadSettings(Protocol):
    blas_threads: int


def tune_native_threads(settings: ThreadSettings) -> None:
    """Applies the settings (``blas_threads`` 0 leaves the libraries' default)."""
    if settings.blas_threads:
        limit_blas_threads(settings.blas_threads)


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

