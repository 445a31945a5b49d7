"""A pool of threads for the blocking work that prepares requests, taken in turns by caller.

asyncio's default executor is first come, first served: when one caller's flood of long
texts queues its phonemizing there, another caller's one sentence waits behind all of it,
however fair the model batchers are afterwards. Here each caller has a queue of its own and
the threads take one job from each caller in turn (round robin), so a flood only ever delays
another caller by the jobs already running. The bookkeeping happens on the event loop; the
threads only run the jobs.

    >>> import asyncio
    >>> async def main():
    ...     pool = FairPool(workers=1, name="doc")
    ...     await asyncio.gather(*(pool.run(c, str.upper, c) for c in "aaab"))
    ...     pool.close()
    ...     return pool.started
    >>> asyncio.run(main())    # "b" came last, but goes second: "a" has had its turn
    ['a', 'b', 'a', 'a']
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def lower_thread_priority(nice: int) -> None:
    """Raises the calling thread's nice value (Linux keeps one per thread, and threads it
    starts inherit it; raising needs no privilege). Under a full CPU, a model's compute
    threads then yield to the event loop, so a burst of arrivals is answered, refusals
    included, while the models keep the cores busy."""
    with contextlib.suppress(OSError):  # not Linux, or a sandbox that forbids it
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, nice))



@dataclass(eq=False, slots=True)
class _Job:
    call: Callable[[], Any]
    future: asyncio.Future[Any]


class FairPool:
    """``workers`` threads; jobs queue per caller and are started in turns."""

    def __init__(self, workers: int, name: str, nice: int = 0) -> None:
        """``nice``: the threads' CPU priority (see ``lower_thread_priority``); work that
        feeds the models runs at theirs, so neither starves the other and the event loop
        stays ahead of both."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._executor = ThreadPoolExecutor(
            workers,
            thread_name_prefix=name,
            initializer=functools.partial(lower_thread_priority, nice) if nice else None,
        )
        self._running = 0
        #: Callers with jobs waiting.
        self._waiting: dict[Hashable | None, deque[_Job]] = {}
        #: When each caller last had a job started (a count of starts); the waiting caller
        #: whose turn is oldest goes next.
        self._turn: dict[Hashable | None, int] = {}
        self._starts = 0
        #: Jobs started, per caller, in order (for tests and metrics).
        self.started: list[Hashable | None] = []

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    async def run(
        self, caller: Hashable | None, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """``fn(*args, **kwargs)`` on a pool thread, when ``caller``'s turn comes.
        Cancelling the caller's task before the job starts withdraws it."""
        loop = asyncio.get_running_loop()
        job = _Job(functools.partial(fn, *args, **kwargs), loop.create_future())
        self._waiting.setdefault(caller, deque()).append(job)
        self._pump(loop)
        result: T = await job.future
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._running < self.workers and self._waiting:
            caller = min(self._waiting, key=lambda c: self._turn.get(c, -1))
            queue = self._waiting[caller]
            job = queue.popleft()
            if not queue:
                del self._waiting[caller]
            if job.future.done():  # its caller went away while it waited
                continue
            self._starts += 1
            self._turn[caller] = self._starts
            if len(self._turn) > 4096:  # forget callers with nothing waiting
                self._turn = {c: t for c, t in self._turn.items() if c in self._waiting}
            self._running += 1
            self.started.append(caller)
            if len(self.started) > 4096:
                del self.started[:2048]
            inner = self._executor.submit(job.call)
            inner.add_done_callback(functools.partial(self._from_thread, loop, job))

    def _from_thread(self, loop: asyncio.AbstractEventLoop, job: _Job, done: Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the job ran
            loop.call_soon_threadsafe(self._finished, loop, job, done)

    def _finished(
        self, loop: asyncio.AbstractEventLoop, job: _Job, done: Future[Any]
    ) -> None:
        self._running -= 1
        if not job.future.done():
            error = done.exception()
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(done.result())
        self._pump(loop)
