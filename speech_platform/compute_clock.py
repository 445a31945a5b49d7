"""How long this process's compute threads ran on a CPU, and how long they waited for one.

Model instances compute in threads whose nice value was raised above the main thread's
(``workpool.lower_thread_priority``), and so do the native pools their libraries start
while loading (threads inherit it), and the audio decoding pool. Linux keeps for every
thread the time it ran and the time it was runnable but waiting for a CPU
(``/proc/self/task/<tid>/schedstat``, in ns). Summed over those threads, the two say how
much slower than alone the models computed over an interval, whatever took the CPU from
them: each other, the event loop taking in a burst, a client or a neighbour on the same
host. ``batcher.admission.SharedDevice`` divides each batch's time by that, so the rates
admission predicts with stay the models' own.

Reading costs ~10 us per thread, on the event loop, once when a batch starts and once when
it ends; samples closer together than ``cache_s`` share one reading.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_TASKS = Path("/proc/self/task")


def _schedstat(tid: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable and waiting) of one thread; None once it has exited."""
    try:
        with open(_TASKS / str(tid) / "schedstat", "rb") as stats:
            fields = stats.read().split()
    except OSError:
        return None
    return int(fields[0]), int(fields[1])


def _nice(tid: int) -> int | None:
    try:
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return None


class NicedThreadsClock:
    """Cumulative seconds (running, waiting for a CPU) of this process's threads whose nice
    value is above the main thread's (a server started under ``nice`` keeps its compute
    threads apart from the rest). Threads found later, or gone, change neither total by
    what they did before or after: only what each listed thread did between two readings
    is added."""

    def __init__(self, relist_s: float = 1.0, cache_s: float = 0.005) -> None:
        self.relist_s = relist_s
        self.cache_s = cache_s
        self._tids: list[int] = []
        self._last: dict[int, tuple[int, int]] = {}
        self._listed_at = -float("inf")
        self._read_at = -float("inf")
        self._run_ns = 0
        self._wait_ns = 0

    @staticmethod
    def available() -> bool:
        """Whether this system keeps per-thread scheduler statistics."""
        return _schedstat(threading.get_native_id()) is not None

    def __call__(self) -> tuple[float, float] | None:
        now = time.monotonic()
        if now - self._read_at < self.cache_s:
            return self._totals()
        if now - self._listed_at >= self.relist_s:
            self._relist()
            self._listed_at = now
        for tid in self._tids:
            stats = _schedstat(tid)
            if stats is None:
                self._last.pop(tid, None)
                continue
            before = self._last.get(tid)
            self._last[tid] = stats
            if before is not None:
                self._run_ns += stats[0] - before[0]
                self._wait_ns += stats[1] - before[1]
        self._read_at = now
        return self._totals()

    def _totals(self) -> tuple[float, float] | None:
        if not self._tids:
            return None
        return self._run_ns / 1e9, self._wait_ns / 1e9

    def _relist(self) -> None:
        try:
            tids = [int(name) for name in os.listdir(_TASKS)]
        except OSError:
            tids = []
        base = _nice(os.getpid()) or 0
        self._tids = [tid for tid in tids if (_nice(tid) or base) > base]
        kept = set(self._tids)
        self._last = {tid: stats for tid, stats in self._last.items() if tid in kept}
