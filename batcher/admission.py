"""Deadline-aware admission: refuse at arrival what cannot be served in time.

Triton's queue policy rejects by queue length or after a request has timed out in the
queue. Both let a request that could never make its deadline wait all of it, holding
memory and a client, and then fail anyway. Here the batcher learns, from the batches it
runs, how many seconds of compute one unit of cost takes (``ServiceRate``). At arrival
it estimates the new request's finish time: the cost waiting ahead of it (at its
priority or higher), half of what is computing now, shared over the instances, plus its
own compute. A request whose estimate exceeds its deadline, or the batcher's latency
objective, is refused at once (``Overloaded``) with a retry delay: the time until the
backlog ahead of it should have shrunk enough. Until a batch has finished, nothing is
known and everything is admitted.

    >>> rate = ServiceRate()
    >>> rate.observe(cost=4.0, seconds=2.0)            # 0.5 s per unit of cost
    >>> estimated_finish_s(rate.seconds_per_cost, ahead_cost=10.0, running_cost=4.0,
    ...                    instances=2, own_cost=1.0)
    3.5
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class ServiceRate:
    """Seconds of compute per unit of cost, smoothed over finished batches."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.seconds_per_cost: float | None = None

    def observe(self, *, cost: float, seconds: float) -> None:
        if cost <= 0 or seconds < 0:
            return
        sample = seconds / cost
        if self.seconds_per_cost is None:
            self.seconds_per_cost = sample
        else:
            self.seconds_per_cost += self.alpha * (sample - self.seconds_per_cost)


class Lateness:
    """How much later than predicted admitted requests finish, learnt from the ones that
    waited behind a backlog: a decayed sum of their actual over their predicted times. The
    rate is learnt from compute alone, so what it cannot see (a noisy neighbour on the host,
    a later arrival's first sentence overtaking a queued one, the event loop's own share of
    a full CPU) shows up here, and admission scales its estimates by ``factor`` so the last
    request it admits still makes its deadline.

    Only predictions of at least ``min_predicted_s`` count: a short request on an idle
    server is dominated by fixed overheads, which do not scale with the backlog.

    >>> late = Lateness()
    >>> late.factor
    1.0
    >>> for _ in range(10):
    ...     late.observe(predicted_s=10.0, actual_s=11.0)
    >>> round(late.factor, 2)
    1.1
    >>> late.observe(predicted_s=0.2, actual_s=2.0)    # too short to count
    >>> round(late.factor, 2)
    1.1
    """

    def __init__(
        self,
        *,
        decay: float = 0.95,
        min_predicted_s: float = 1.0,
        min_evidence_s: float = 10.0,
        max_factor: float = 2.0,
    ) -> None:
        self.decay = decay
        self.min_predicted_s = min_predicted_s
        self.min_evidence_s = min_evidence_s
        self.max_factor = max_factor
        self._actual = 0.0
        self._predicted = 0.0

    def observe(self, *, predicted_s: float, actual_s: float) -> None:
        if predicted_s < self.min_predicted_s or actual_s < 0:
            return
        self._actual = self._actual * self.decay + actual_s
        self._predicted = self._predicted * self.decay + predicted_s

    @property
    def factor(self) -> float:
        """>= 1: earlier than predicted is not trusted (the rate already learns speed)."""
        if self._predicted < self.min_evidence_s:
            return 1.0
        return min(max(self._actual / self._predicted, 1.0), self.max_factor)


def estimated_finish_s(
    seconds_per_cost: float,
    *,
    ahead_cost: float,
    running_cost: float,
    instances: int,
    own_cost: float,
) -> float:
    """When a request arriving now should be done, in seconds from now.

    The work ahead drains over every instance at once; running batches are on average
    half done; the request's own batch runs on one instance.
    """
    backlog = (ahead_cost + running_cost / 2.0) / max(instances, 1)
    return seconds_per_cost * (backlog + own_cost)


@dataclass(frozen=True, slots=True)
class Mark:
    """A point in a device's history: when, how many thread-seconds had been busy, and (with
    a ``ComputeClock``) the compute threads' cumulative seconds on a CPU and waiting for one."""

    at: float
    busy_area: float
    cpu: tuple[float, float] | None = None


#: Seconds the device's compute threads have spent, in all, running on a CPU and runnable
#: but waiting for one (None where that cannot be read). Cumulative, like a clock.
ComputeClock = Callable[[], tuple[float, float] | None]

#: Less CPU time than this between two marks is too little to measure contention from.
_MIN_MEASURED_RUN_S = 0.002
#: A measured contention is believed up to this multiple of the busy-thread count's.
_MAX_MEASURED_OVER_COUNTED = 2.0


class DeviceMember(Protocol):
    """A batcher on a shared device, as admission sees the others."""

    def demand_core_s(self) -> float:
        """Compute it holds (queued, promised, half of running), in core-seconds."""
        ...

    @property
    def width(self) -> float:
        """Threads it keeps busy when all its instances compute."""
        ...


class SharedDevice:
    """Cores that several batchers compute on at once: the CPU of one server process.

    Speech-to-text and text-to-speech batchers on one CPU each see only their own queue.
    At a burst each would admit work as if it had every core, and half of what both
    admitted would then miss its deadline. Members of a device report the compute they
    hold; admission adds the others' share to its own estimate (processor sharing: while
    both have work, each gets about half). And since a batch measured while others also
    computed ran slower than alone, its time is divided by the contention it ran under,
    so every member's rate stays its solo rate and nothing is counted twice.

    Contention is measured where the operating system can say it (``compute_clock``): how
    long the compute threads waited for a CPU for each second they ran, whatever took the
    CPU from them (each other, the event loop taking in a burst, another process on the
    host). Counting only the members' busy threads per core missed the rest: the batches
    run while 1,000 calls arrived ran ~35 % slower than counted, and the rates learnt from
    them made admission refuse a quarter of what the server then served in time. Without a
    clock (or too little CPU time to judge by), the mean busy threads per core stands in.

        >>> cpu = SharedDevice(parallelism=2, clock=iter([0.0, 0.0, 0.0, 1.0]).__next__)
        >>> mark = cpu.enter(2.0)        # two threads of one batcher busy from t=0
        >>> _ = cpu.enter(2.0)           # two of another batcher from t=0
        >>> cpu.contention_since(mark)   # mean of 4 busy threads on 2 cores over [0, 1]
        2.0
    """

    def __init__(
        self,
        parallelism: float,
        clock: Callable[[], float] = time.perf_counter,
        compute_clock: ComputeClock | None = None,
    ) -> None:
        if parallelism <= 0:
            raise ValueError("parallelism must be > 0")
        self.parallelism = float(parallelism)
        self._clock = clock
        self._compute_clock = compute_clock
        self._members: list[DeviceMember] = []
        self._busy = 0.0
        self._area = 0.0
        self._since = clock()

    def join(self, member: DeviceMember) -> None:
        if all(m is not member for m in self._members):
            self._members.append(member)

    def leave(self, member: DeviceMember) -> None:
        self._members = [m for m in self._members if m is not member]

    def others(self, member: DeviceMember) -> list[DeviceMember]:
        return [m for m in self._members if m is not member]

    def enter(self, threads: float) -> Mark:
        """``threads`` start computing; returns the mark to measure their contention from."""
        mark = self._advance(measure=True)
        self._busy += threads
        return mark

    def exit(self, threads: float) -> None:
        self._advance()
        self._busy = max(self._busy - threads, 0.0)

    def contention_since(self, mark: Mark) -> float:
        """How many times slower than alone work ran since ``mark``, at least 1: (running +
        waiting) / running of the compute threads, else the mean busy threads per core.

        A measurement is believed up to twice the counted contention (outside work that
        slows the members down as much again as they slow each other; a burst's intake
        measured 1.35x): a reading dominated by threads that only waited (another server's,
        left in a test process) must not make a batch look many times faster than it ran,
        and so every later estimate far too short. A safety net, not a model."""
        now = self._advance(measure=mark.cpu is not None)
        elapsed = now.at - mark.at
        busy = (now.busy_area - mark.busy_area) / elapsed if elapsed > 0 else self._busy
        counted = max(busy / self.parallelism, 1.0)
        if mark.cpu is not None and now.cpu is not None:
            ran = now.cpu[0] - mark.cpu[0]
            waited = now.cpu[1] - mark.cpu[1]
            if ran >= _MIN_MEASURED_RUN_S and waited >= 0:
                return max(min((ran + waited) / ran, _MAX_MEASURED_OVER_COUNTED * counted), 1.0)
        return counted

    def _advance(self, *, measure: bool = False) -> Mark:
        now = self._clock()
        self._area += self._busy * (now - self._since)
        self._since = now
        cpu = self._compute_clock() if measure and self._compute_clock is not None else None
        return Mark(now, self._area, cpu)


def shared_finish_s(
    own_backlog_core_s: float,
    own_width: float,
    others: list[tuple[float, float]],
    parallelism: float,
    own_compute_s: float,
    own_threads: float,
) -> float:
    """When a request arriving now should be done, with other batchers on the same cores.

    ``own_backlog_core_s``: the compute queued ahead of it in its own batcher; ``others``:
    (demand in core-seconds, width in threads) of each other member. The backlog drains
    no faster than its own batcher alone would (over ``own_width`` threads), nor than the
    cores can serve it together with each other member's work up to the same amount (the
    others keep their share of the cores only while they have work). The request's own
    compute is slowed by the contention it will meet.

        >>> shared_finish_s(4.0, 2.0, [], 2.0, 0.5, 1.0)         # alone: 4 core-s on 2
        2.5
        >>> shared_finish_s(4.0, 2.0, [(10.0, 2.0)], 2.0, 0.5, 1.0)   # another is as busy
        4.75
    """
    shared = own_backlog_core_s + sum(min(d, own_backlog_core_s) for d, _ in others)
    backlog_s = max(own_backlog_core_s / max(own_width, 1e-9), shared / parallelism)
    busy = own_threads + sum(width for demand, width in others if demand > 0)
    return backlog_s + own_compute_s * max(busy / parallelism, 1.0)
