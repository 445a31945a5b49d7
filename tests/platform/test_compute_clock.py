"""The compute clock: CPU time and run-queue waits of this process's lowered-priority
threads, read from Linux's per-thread scheduler statistics."""

from __future__ import annotations

import threading
import time

from speech_platform.compute_clock import NicedThreadsClock
from speech_platform.workpool import lower_thread_priority

BURN_S = 0.1


def test_this_system_keeps_per_thread_scheduler_statistics() -> None:
    # Linux (/proc/self/task/<tid>/schedstat); without it admission counts busy threads.
    assert NicedThreadsClock.available()


class Burner:
    """A thread that lowers its priority (or not), waits to be told, burns ``BURN_S`` of
    CPU, and stays alive until released (a thread that has exited has no statistics)."""

    def __init__(self, nice: int) -> None:
        """``nice`` 0: as the main thread (the process's own nice, whatever it is)."""
        self.ready, self.go, self.burned, self.release = (threading.Event() for _ in range(4))
        self.thread = threading.Thread(target=self._run, args=(nice,))
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, nice: int) -> None:
        if nice:
            lower_thread_priority(nice)
        self.ready.set()
        self.go.wait(10)
        if self.release.is_set():
            return
        started = time.thread_time()
        while time.thread_time() - started < BURN_S:
            pass
        self.burned.set()
        self.release.wait(10)

    def burn(self) -> None:
        self.go.set()
        assert self.burned.wait(10)

    def stop(self) -> None:
        self.release.set()
        self.go.set()
        self.thread.join(10)


def _ran_while(burner: Burner) -> float:
    clock = NicedThreadsClock(relist_s=0.0, cache_s=0.0)
    before = clock()
    try:
        burner.burn()
        after = clock()
    finally:
        burner.stop()
    assert before is not None and after is not None
    assert after[1] >= before[1]  # waits only grow
    return after[0] - before[0]


def test_a_lowered_threads_cpu_time_is_counted() -> None:
    assert _ran_while(Burner(nice=10)) >= BURN_S * 0.9


def test_a_thread_at_normal_priority_is_not() -> None:
    idle = Burner(nice=10)  # a lowered thread that does nothing, so there is one to read
    try:
        # Another lowered thread in this process could run meanwhile; none burns this long.
        assert _ran_while(Burner(nice=0)) < BURN_S / 2
    finally:
        idle.stop()


def test_readings_closer_than_the_cache_time_are_one_reading() -> None:
    burner = Burner(nice=10)
    clock = NicedThreadsClock(relist_s=0.0, cache_s=3600.0)
    try:
        first = clock()
        burner.burn()
        assert clock() == first
    finally:
        burner.stop()
