"""A server-wide budget for the bytes that requests in flight hold.

Without one, sixteen concurrent 30 MiB Transcribe calls took a server to 5 GB. Each call
reserves what it is about to hold (the audio it arrived with and a bound on what decoding
makes of it) before it decodes; a reservation that would pass the limit is refused at once
with RESOURCE_EXHAUSTED, naming the limit, and costs nothing. Once the work's real size is
known the reservation is resized to it, and it is released when the call ends, whatever
the outcome.

    >>> budget = MemoryBudget(limit_bytes=100)
    >>> with budget.reserve(60, "a call") as held:
    ...     held.resize(40)
    ...     budget.in_use
    40
    >>> budget.in_use
    0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from speech_platform.errors import ResourceExhausted
from speech_platform.metrics import MEMORY_BUDGET_IN_USE, REFUSALS

MIB = 1024 * 1024


class Reservation:
    """Bytes one call holds against the budget."""

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self._budget = budget
        self.nbytes = nbytes

    def resize(self, nbytes: int) -> None:
        """To the work's real size (growing may be refused like a new reservation)."""
        self._budget._take(max(nbytes, 0) - self.nbytes, "the rest of this call")
        self.nbytes = max(nbytes, 0)


class MemoryBudget:
    """``limit_bytes`` in all for requests in flight; 0 means no limit (counted anyway)."""

    def __init__(self, limit_bytes: int = 0) -> None:
        self.limit_bytes = limit_bytes
        self.in_use = 0
        #: Reservations made so far: tells an idle-memory trimmer there was work.
        self.reservations = 0
        #: The most ever held at once.
        self.high_water = 0

    @contextmanager
    def reserve(self, nbytes: int, what: str) -> Iterator[Reservation]:
        self._take(nbytes, what)
        self.reservations += 1
        held = Reservation(self, nbytes)
        try:
            yield held
        finally:
            self._take(-held.nbytes, what)

    def _take(self, nbytes: int, what: str) -> None:
        if nbytes > 0 and self.limit_bytes and self.in_use + nbytes > self.limit_bytes:
            REFUSALS.labels("memory_budget").inc()
            raise ResourceExhausted(
                f"{what} needs about {nbytes / MIB:.1f} MiB and the server's memory budget "
                f"for requests in flight ({self.limit_bytes / MIB:.0f} MiB, "
                f"server.memory_budget_mb) has {max(self.limit_bytes - self.in_use, 0) / MIB:.1f} "
                "MiB free; retry shortly, or send less audio or text",
                retry_after_s=1.0,
            )
        self.in_use += nbytes
        self.high_water = max(self.high_water, self.in_use)
        MEMORY_BUDGET_IN_USE.set(self.in_use)
