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
