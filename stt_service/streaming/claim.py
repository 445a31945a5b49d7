"""Decides, without a race, whether a queued interim decode runs or is superseded.

Cancelling the task that awaits ``Batcher.submit`` withdraws the request while it waits,
but a request the batcher has just put into a batch is past that point, and the stream
cannot see the difference from the event loop. The claim settles it in one place: the
engine calls ``begin`` (in its instance thread) right before it decodes the item, the
stream calls ``abandon`` when newer audio makes the decode stale; whichever comes first
wins, under a lock. So a superseded interim is never computed, and a stream never starts
a second interim while its first one is computing.
"""

from __future__ import annotations

import threading

_QUEUED, _STARTED, _ABANDONED = 0, 1, 2


class DecodeClaim:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _QUEUED

    def begin(self) -> bool:
        """The engine is about to decode: True unless the stream abandoned it first."""
        with self._lock:
            if self._state == _ABANDONED:
                return False
            self._state = _STARTED
            return True

    def abandon(self) -> bool:
        """The stream no longer wants it: True if it had not started (it never will)."""
        with self._lock:
            if self._state == _STARTED:
                return False
            self._state = _ABANDONED
            return True

    @property
    def started(self) -> bool:
        with self._lock:
            return self._state == _STARTED
