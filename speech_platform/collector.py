"""Python's cyclic garbage collector, set for a long-running server.

CPython collects its youngest generation every 700 net allocations of container objects
and, every tenth of those, the middle one; every so often it walks the whole heap. A
server's heap at rest is what start-up built (modules, models, voices: ~72,000 tracked
objects here), and a burst allocates a great many short-lived objects (one call's
messages, futures, coroutines). Measured on a 2-core server taking a 1,000-call burst,
collections took ~115 ms of the event loop's ~700 ms in the burst's first 1.5 s, full ones
15-67 ms each, every one of them a pause for every caller (docs/benchmarks.md,
"Overload"). So:

- ``freeze_startup_heap`` moves what start-up built to the permanent generation
  (``gc.freeze``): collections no longer walk it; what it holds is alive for the
  process's life anyway.
- ``young_threshold`` lets the youngest generation grow to that many objects before a
  collection: most of a call's objects are gone by then and are freed by reference
  counting, so fewer collections traverse fewer survivors.

Both only for a process that is the server (the speech-server command); a server started
inside another program leaves that program's collector as it is.
"""

from __future__ import annotations

import gc
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class CollectorSettings(Protocol):
    gc_freeze_after_start: bool
    gc_young_threshold: int


def tune_collector(settings: CollectorSettings) -> None:
    """Applies both settings once the server has started (its models loaded)."""
    if settings.gc_freeze_after_start:
        freeze_startup_heap()
    if settings.gc_young_threshold:
        young_threshold(settings.gc_young_threshold)


def freeze_startup_heap() -> int:
    """Collects what start-up left over, then freezes the rest; returns how many objects
    are frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap frozen", extra={"objects": frozen})
    return frozen


def young_threshold(objects: int) -> None:
    """Sets the youngest generation's threshold, the older ones' left as they are."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(objects, middle, oldest)
