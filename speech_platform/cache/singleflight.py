"""In-process single-flight: identical concurrent work runs once and is shared.

The shared work runs in its own task, not in the first caller's, so the first caller going
away (a client cancelling, a deadline) does not fail everyone who joined; the work is
cancelled only when no caller is left to want it, because the batcher must never compute
for nobody.

Two shapes: :class:`SingleFlight` shares one result; :class:`StreamFlight` shares a
stream, so a caller that joins late first replays what was produced so far and then follows
live (time to first audio stays that of the first caller).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)


class _Flight(Generic[T]):
    __slots__ = ("callers", "task")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.callers = 0


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(result, joined): joined is True when an identical call was already running and
        this caller shared its outcome (result or exception) instead of running ``work``."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = _Flight(asyncio.ensure_future(work()))
            self._flights[key] = flight
            flight.task.add_done_callback(functools.partial(self._forget, key, flight))
        flight.callers += 1
        try:
            # shield: one caller's cancellation must not cancel the others' work
            result = await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            flight.callers -= 1
            if flight.callers == 0 and not flight.task.done():
                flight.task.cancel()
            raise
        flight.callers -= 1
        return result, joined

    def _forget(self, key: str, flight: _Flight[T], _task: object) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.task.cancelled():
            flight.task.exception()  # retrieved here so an unjoined failure is not logged


class StreamRun:
    """Chunks produced so far plus a wake-up for followers."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.finished = False
        self.error: BaseException | None = None
        self.changed = asyncio.Event()
        self.callers = 0
        self.task: asyncio.Task[None] | None = None

    def publish(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        self.finished = True
        self.error = error
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Lookup:
    """One caller's lookup of a key elsewhere, from ``StreamFlight.lookup_started``."""

    __slots__ = ("key", "open")

    def __init__(self, key: str) -> None:
        self.key = key
        self.open = True


class StreamFlight:
    def __init__(self) -> None:
        self._flights: dict[str, StreamRun] = {}
        #: Per key, how many callers are looking it up elsewhere right now.
        self._looking: dict[str, int] = {}
        #: Runs that ended without error while a lookup of their key was out.
        self._ended: dict[str, StreamRun] = {}

    def lookup_started(self, key: str) -> Lookup:
        """A caller is about to look ``key`` up elsewhere (Redis). A run of ``key`` that
        stores its result and ends while any such lookup is out is kept until the last one
        is done: a lookup sent before the store misses it, and its caller then replays the
        run instead of starting it again."""
        self._looking[key] = self._looking.get(key, 0) + 1
        return Lookup(key)

    def lookup_done(self, lookup: Lookup) -> None:
        """The lookup is over (idempotent)."""
        if not lookup.open:
            return
        lookup.open = False
        left = self._looking.get(lookup.key, 0) - 1
        if left > 0:
            self._looking[lookup.key] = left
        else:
            self._looking.pop(lookup.key, None)
            self._ended.pop(lookup.key, None)

    async def stream(
        self,
        key: str,
        produce: Callable[[], AsyncGenerator[bytes, None]],
        on_complete: Callable[[list[bytes]], Awaitable[None]] | None = None,
        *,
        lookup: Lookup | None = None,
    ) -> AsyncGenerator[tuple[bytes, bool], None]:
        """Yields (chunk, joined). The first caller starts ``produce``; identical callers
        arriving while it runs replay its chunks and follow it. ``on_complete`` gets all
        chunks once ``produce`` ended without error (to store them); callers' streams end
        after it returns. ``lookup``: this caller's (``lookup_started``), ended here once
        the caller has its run; a run that ended while it was out is replayed."""
        flight = self._flights.get(key) or self._ended.get(key)
        if lookup is not None:
            self.lookup_done(lookup)
        joined = flight is not None
        if flight is None:
            flight = StreamRun()
            self._flights[key] = flight
            flight.task = asyncio.ensure_future(self._pump(key, flight, produce, on_complete))
        flight.callers += 1
        position = 0
        try:
            while True:
                changed = flight.changed
                while position < len(flight.chunks):
                    yield flight.chunks[position], joined
                    position += 1
                if flight.finished:
                    if flight.error is not None:
                        raise flight.error
                    return
                await changed.wait()
        finally:
            flight.callers -= 1
            abandoned = flight.callers == 0 and not flight.finished
            if abandoned and flight.task is not None and not flight.task.done():
                flight.task.cancel()  # nobody listens any more: stop the engines

    async def _pump(
        self,
        key: str,
        flight: StreamRun,
        produce: Callable[[], AsyncGenerator[bytes, None]],
        on_complete: Callable[[list[bytes]], Awaitable[None]] | None,
    ) -> None:
        try:
            try:
                async for chunk in produce():
                    flight.publish(chunk)
            except asyncio.CancelledError:
                flight.finish(asyncio.CancelledError())
                raise
            except Exception as exc:
                flight.finish(exc)
                return
            if on_complete is not None:
                # Before finish(): a caller whose stream ended can count on a repeat being a
                # hit, and one arriving meanwhile replays this run instead of starting anew.
                try:
                    await on_complete(list(flight.chunks))
                except Exception:  # storing is best effort; the stream itself succeeded
                    logger.exception("storing a finished stream failed", extra={"key": key})
            flight.finish()
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
                if self._looking.get(key) and flight.finished and flight.error is None:
                    self._ended[key] = flight
