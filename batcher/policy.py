"""The dispatch rules of one batcher, as plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch leaves and what it may hold (Triton's dynamic-batcher semantics).

    A batch leaves as soon as an instance is idle and one of these holds:
    ``max_batch_size`` requests wait; the summed cost reaches ``max_batch_cost``; the
    largest of ``preferred_batch_sizes`` is reached; or the oldest request has waited
    ``max_queue_delay_s``. While every instance is busy no batch is formed, so load grows
    batches by itself.

    >>> BatchPolicy(max_batch_size=4, max_queue_delay_s=0.005).max_batch_size
    4
    """

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_s: float = 0.005
    #: Requests waiting (not computing) at most; the next gets QueueFull. Exact.
    max_queue_size: int = 256
    #: Bound on a batch's summed cost; 0 = unbounded. A single request costlier than
    #: this still runs, alone.
    max_batch_cost: float = 0.0
    #: When > 0, a batch only takes requests whose cost is within this factor of its
    #: head's, so padded engines waste little; the others wait for their own batch.
    similar_cost_ratio: float = 0.0
    #: Each this many seconds of waiting adds one priority level (no starvation).
    priority_aging_s: float = 2.0
    #: Aging adds at most this many levels (0: no cap) to a request whose turn came only
    #: because its own caller's later work went first. With levels that order a caller's
    #: own work (TTS: a request's later sentences below its first), a cap lets that work
    #: catch up with its own kind without aging past other callers' new requests; work
    #: whose fair turn came by virtual time ages without a cap (nothing starves).
    priority_aging_max_levels: int = 0
    #: When > 0, wait adaptively (see batcher.adaptive) within this latency budget.
    target_latency_s: float = 0.0
    #: Retry-after hint given with QueueFull.
    retry_after_s: float = 0.5
    #: Refuse at arrival a request predicted to miss its deadline (see batcher.admission).
    admission: bool = True
    #: With admission, also refuse what is predicted to take longer than this in all
    #: (queue plus compute), deadline or not; 0 = only deadlines count.
    latency_objective_s: float = 0.0
    #: With admission, the share of the deadline (or objective) kept in reserve: a request
    #: is admitted only if predicted to finish this much before it.
    admission_margin: float = 0.0
    #: The share of ``max_queue_size`` one caller may hold waiting (CallerOverloaded past
    #: it), so that a flood cannot fill the queue for everyone; 1 = no cap of its own.
    max_caller_queue_share: float = 1.0
    #: How long after its last arrival (admitted or refused) a caller counts as present.
    #: The share cap and "behind your own work" refusals apply only while another caller
    #: is present: a caller alone is the whole load, and may use the whole queue.
    caller_presence_s: float = 10.0
    #: Instances on top of the pool's that take only the work of a caller with nothing
    #: running here: a light caller's request starts at once beside a flood (batcher.core).
    express_instances: int = 0
    name: str = field(default="batcher", compare=False)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_queue_size < 1:
            raise ValueError("max_queue_size must be >= 1")
        if self.max_queue_delay_s < 0 or self.max_batch_cost < 0:
            raise ValueError("delays and costs cannot be negative")
        if any(not 1 <= size <= self.max_batch_size for size in self.preferred_batch_sizes):
            raise ValueError("preferred batch sizes must lie in 1..max_batch_size")
        if self.latency_objective_s < 0:
            raise ValueError("latency_objective_s cannot be negative")
        if self.caller_presence_s < 0:
            raise ValueError("caller_presence_s must be >= 0")
        if not 0 < self.max_caller_queue_share <= 1:
            raise ValueError("max_caller_queue_share must lie in (0, 1]")
        if self.express_instances < 0:
            raise ValueError("express_instances cannot be negative")
        if self.priority_aging_s <= 0:
            raise ValueError("priority_aging_s must be > 0")

    @property
    def max_caller_queue(self) -> int:
        """Requests one caller may have waiting."""
        return max(1, math.ceil(self.max_queue_size * self.max_caller_queue_share))

    @property
    def dispatch_size(self) -> int:
        """The count at which a batch leaves without waiting for the delay."""
        return max(self.preferred_batch_sizes, default=self.max_batch_size)
