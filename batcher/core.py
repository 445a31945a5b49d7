"""A dynamic micro-batcher for asyncio servers: Triton's dispatch rules, a pool of model
instances, and one outcome per request.

Callers ``await batcher.submit(item)`` one item at a time; the batcher packs waiting items
into batches and runs each batch on an idle model instance, in that instance's own thread
(engines such as CTranslate2 and onnxruntime release the GIL, so N instances use N cores).

    >>> import asyncio
    >>> def load(instance: int):
    ...     return lambda items: [x * 2 for x in items]      # one call per batch
    >>> async def main():
    ...     b = Batcher(load, BatchPolicy(max_batch_size=4, max_queue_delay_s=0.01))
    ...     await b.start()
    ...     out = await asyncio.gather(*(b.submit(i) for i in range(6)))
    ...     await b.close()
    ...     return out
    >>> asyncio.run(main())
    [0, 2, 4, 6, 8, 10]

What it guarantees, and where it goes past its peers:

* Dispatch (Triton): a batch leaves when an instance is idle and ``max_batch_size`` (or the
  largest preferred size, or ``max_batch_cost``) is reached, or the oldest request has
  waited ``max_queue_delay_s``. No batch is formed while every instance is busy, so batches
  grow with load. Event-driven: the only timer is the oldest request's delay, no polling.
* Cost-aware packing: a batch is bounded by count and by summed cost, and with
  ``similar_cost_ratio`` it takes only requests of similar cost, so padding stays small.
* Deadlines and cancellation: a request whose deadline passes, or whose caller goes away,
  while it waits is removed at once and never computed.
* ``max_queue_size`` is exact: the request that would exceed it gets QueueFull.
* Priorities with aging: higher ``priority`` goes first, and every whole
  ``priority_aging_s`` of waiting adds a level, so low priority cannot starve. FIFO within
  a level.
* Fair queuing between callers (``caller=``): a request is ordered by the time it would
  start if every caller had an equal share of the instances (a virtual clock per caller,
  advanced by the compute it queued, at the learnt rate), so one caller's flood waits
  behind everyone else's next request instead of in front of it. Without callers, or with
  one, the order is plain FIFO. While another caller is present (``caller_presence_s``), one
  caller may hold only ``max_caller_queue_share`` of the queue, and a refusal caused by its
  own backlog is CallerOverloaded; alone, a caller is the whole load and may use it all.
* Express instances (``express_instances``): extra instances that take only the work of a
  caller with nothing running, so a light caller's request starts at once even when a
  flood keeps every other instance busy (a running item cannot be interrupted, so fair
  order alone still leaves it waiting for one to finish). A caller that already computes
  somewhere never gets one, so a flood cannot take them over.
* Admission (past Triton's queue policy): a request predicted to miss its deadline, or the
  latency objective, is refused at arrival with a retry delay (batcher.admission). Work a
  caller has been admitted for but is still preparing (decoding, phonemizing) is held by a
  ``reserve``d promise, so a burst is judged on arrival, not after its preparation; and
  batchers on one ``SharedDevice`` (the CPU) count each other's work.
* Per-item outcomes: a handler returns a result or an exception per item. When it raises
  for a whole batch (Ray Serve then fails every caller), the batcher re-runs the items one
  by one, so only the bad item fails.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from batcher.adaptive import AdaptiveDelay
from batcher.admission import (
    Lateness,
    ServiceRate,
    SharedDevice,
    estimated_finish_s,
    shared_finish_s,
)
from batcher.errors import (
    BatcherClosed,
    CallerOverloaded,
    DeadlineExpired,
    Overloaded,
    QueueFull,
    RequestCancelled,
)
from batcher.observer import BatchObserver, RecordingObserver
from batcher.policy import BatchPolicy

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")

#: Runs one batch: takes the items, returns one result or exception per item, in order.
BatchFunction = Callable[[list[In]], Sequence[Out | BaseException]]
#: Builds the batch function of instance ``i``; runs in that instance's thread, so a model
#: loaded here lives there.
HandlerFactory = Callable[[int], BatchFunction[In, Out]]

_QUEUED, _RUNNING, _DONE = 0, 1, 2
# loop.call_at may fire up to one clock tick early; closer than this counts as "now".
_EPSILON_S = 1e-6


@dataclass(eq=False, slots=True)
class _Request(Generic[In, Out]):
    item: In
    cost: float
    priority: int
    seq: int
    enqueued_at: float
    #: When it would start if each caller had an equal share (= enqueued_at without one).
    fair_at: float
    deadline: float | None
    future: asyncio.Future[Out]
    caller: Hashable | None = None
    timer: asyncio.TimerHandle | None = None
    state: int = _QUEUED
    #: Seconds to its finish as estimated at arrival (None: no rate learnt yet).
    predicted_s: float | None = None


@dataclass(eq=False, slots=True)
class _Instance(Generic[In, Out]):
    index: int
    executor: ThreadPoolExecutor
    run_batch: BatchFunction[In, Out]
    #: Takes only the work of callers with nothing running (BatchPolicy.express_instances).
    express: bool = False


class Batcher(Generic[In, Out]):
    """Packs concurrently submitted items into batches on a pool of instances."""

    def __init__(
        self,
        handler_factory: HandlerFactory[In, Out],
        policy: BatchPolicy | None = None,
        *,
        instances: int = 1,
        observer: BatchObserver | None = None,
        device: SharedDevice | None = None,
        threads_per_instance: float = 1.0,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be >= 1")
        if threads_per_instance <= 0:
            raise ValueError("threads_per_instance must be > 0")
        self.policy = policy or BatchPolicy()
        #: Instances that take any work; the policy's express instances come on top.
        self.instance_count = instances
        #: The cores it shares with other batchers (None: admission sees only this one).
        self.device = device
        self.threads_per_instance = float(threads_per_instance)
        #: Cost admitted by ``reserve`` whose items are not submitted yet, in all and per
        #: caller.
        self._promised_cost = 0.0
        self._promised: dict[Hashable | None, float] = {}
        self.observer: BatchObserver = observer or RecordingObserver()
        self._factory = handler_factory
        self._queues: dict[int, deque[_Request[In, Out]]] = {}
        self._pending = 0
        self._pending_cost = 0.0
        #: Waiting cost per priority level, and the latest fair start given to any request:
        #: admission then sums what is ahead of an arrival without walking the queue when
        #: the arrival's fair start is past every waiting one (a backlog's next request).
        self._level_cost: dict[int, float] = {}
        self._latest_fair_at = -math.inf
        self._running = 0
        self._running_cost = 0.0
        self._rate = ServiceRate()
        #: How much later than estimated admitted requests finish (admission scales by it).
        self._lateness = Lateness()
        #: Per caller: the virtual time its queued work would be served by (fair queuing).
        self._caller_clock: dict[Hashable, float] = {}
        #: The fair start of the latest request dispatched: the system's virtual time
        #: while nothing waits (see ``_virtual_now``).
        self._dispatched_at = 0.0
        #: The waiting requests' fair starts, earliest first, for the virtual time (requests
        #: that left stay until they reach the top: taking them out would cost a search).
        self._fair_heap: list[tuple[float, int, _Request[In, Out]]] = []
        #: Per caller, the latest fair start dispatched: its waiting requests with earlier
        #: fair starts were overtaken by its own later ones (levels), so their turn came.
        self._caller_dispatched: dict[Hashable, float] = {}
        self._callers_seen = False
        #: Callers by their last arrival (oldest first), kept for caller_presence_s.
        self._arrivals: OrderedDict[Hashable, float] = OrderedDict()
        #: Per caller: the cost it has waiting (for the queue-share metric) and how many.
        self._caller_queued: dict[Hashable, float] = {}
        self._caller_count: dict[Hashable, int] = {}
        self._seq = itertools.count()
        self._instances: list[_Instance[In, Out]] = []
        self._idle: deque[_Instance[In, Out]] = deque()
        self._idle_express: deque[_Instance[In, Out]] = deque()
        #: Per caller: its requests computing now (express instances serve only callers
        #: with none).
        self._caller_running: dict[Hashable | None, int] = {}
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False
        self._quiet = asyncio.Event()
        self._adaptive = (
            AdaptiveDelay(self.policy.target_latency_s, self.policy.max_queue_delay_s)
            if self.policy.target_latency_s > 0
            else None
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Builds every instance (each in its own thread) and starts dispatching."""
        loop = asyncio.get_running_loop()
        self._loop = loop

        async def build(index: int) -> _Instance[In, Out]:
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"{self.policy.name}-{index}")
            try:
                run_batch = await loop.run_in_executor(executor, self._factory, index)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            return _Instance(index, executor, run_batch, express=index >= self.instance_count)

        total = self.instance_count + self.policy.express_instances
        results = await asyncio.gather(*(build(i) for i in range(total)), return_exceptions=True)
        built = [r for r in results if isinstance(r, _Instance)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            for instance in built:
                instance.executor.shutdown(wait=False)
            raise failure
        self._instances = built
        self._idle = deque(i for i in built if not i.express)
        self._idle_express = deque(i for i in built if i.express)
        self._started = True
        if self.device is not None:
            self.device.join(self)
        self._dispatch()

    async def close(self, grace_s: float | None = None) -> None:
        """Stops taking work, lets queued and running work finish, then frees instances.

        Waiting requests leave at once rather than after their delay. Those still queued
        when ``grace_s`` runs out get BatcherClosed; running batches are always awaited,
        since a thread cannot be interrupted.
        """
        self._closed = True
        self._dispatch()
        if not self._started:
            self._fail_queued(BatcherClosed(f"{self.policy.name} closed before it started"))
        if self._pending or self._running:
            self._quiet.clear()
            try:
                await asyncio.wait_for(self._quiet.wait(), grace_s)
            except TimeoutError:
                self._fail_queued(BatcherClosed(f"{self.policy.name} closed: grace period over"))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._wake is not None:
            self._wake.cancel()
        for instance in self._instances:
            instance.executor.shutdown(wait=False)
        self._started = False
        if self.device is not None:
            self.device.leave(self)

    # ------------------------------------------------------------------ submitting

    @property
    def pending(self) -> int:
        """Requests waiting for a batch (not counting those computing)."""
        return self._pending

    @property
    def running(self) -> int:
        """Requests in batches that are computing now."""
        return self._running

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(
        self,
        item: In,
        *,
        cost: float = 1.0,
        priority: int = 0,
        timeout_s: float | None = None,
        caller: Hashable | None = None,
    ) -> Out:
        """Queues one item and returns its own result (or raises its own exception).

        ``cost`` measures the item's work (seconds of audio, phonemes) for cost-bounded
        batches; ``priority``: higher goes first; ``timeout_s``: the request's remaining
        deadline, after which it is dropped if still waiting (DeadlineExpired);
        ``caller``: who asks, for fair queuing between callers (None: no share kept).
        Raises QueueFull when max_queue_size requests already wait, BatcherClosed while
        draining; cancelling the awaiting task withdraws a waiting request.
        """
        if self._closed:
            self.observer.rejected("closed")
            raise BatcherClosed(f"{self.policy.name} is draining")
        if timeout_s is not None and timeout_s <= 0:
            self.observer.rejected("deadline")
            raise DeadlineExpired(f"{self.policy.name}: deadline already passed on arrival")
        self.check_room(1, caller)
        predicted = self._admit(float(cost), int(priority), timeout_s, caller)
        loop = asyncio.get_running_loop()
        now = loop.time()
        request: _Request[In, Out] = _Request(
            item=item,
            cost=float(cost),
            priority=int(priority),
            seq=next(self._seq),
            enqueued_at=now,
            fair_at=self._fair_start(caller, float(cost), now),
            deadline=None if timeout_s is None else now + timeout_s,
            future=loop.create_future(),
            caller=caller,
            predicted_s=predicted,
        )
        if request.deadline is not None:
            request.timer = loop.call_at(request.deadline, self._expire, request)
        self._queues.setdefault(request.priority, deque()).append(request)
        self._pending += 1
        self._pending_cost += request.cost
        self._level_cost[request.priority] = (
            self._level_cost.get(request.priority, 0.0) + request.cost
        )
        self._latest_fair_at = max(self._latest_fair_at, request.fair_at)
        self._remember_fair_start(request)
        if caller is not None:
            self._caller_queued[caller] = self._caller_queued.get(caller, 0.0) + request.cost
            self._caller_count[caller] = self._caller_count.get(caller, 0) + 1
        self.observer.pending_changed(self._pending)
        if self._adaptive is not None:
            self._adaptive.observe_arrival(now)
        self._dispatch()
        try:
            return await request.future
        except asyncio.CancelledError:
            if request.state == _QUEUED:
                self._withdraw(request)
                self.observer.rejected("cancelled")
                self._observe_unfinished(request)
                self._dispatch()
            raise

    @property
    def width(self) -> float:
        """Threads this batcher keeps busy when every instance computes."""
        return self.instance_count * self.threads_per_instance

    @property
    def core_seconds_per_cost(self) -> float | None:
        """Compute one unit of cost takes, in core-seconds (None until a batch finished):
        comparable between batchers that count cost in the same unit."""
        per_cost = self._rate.seconds_per_cost
        return None if per_cost is None else per_cost * self.threads_per_instance

    def demand_core_s(self) -> float:
        """The compute it holds, in core-seconds: queued and promised work, and half of what
        is running (on average half done); 0 until a rate is learnt."""
        per_cost = self._rate.seconds_per_cost
        if per_cost is None:
            return 0.0
        held = self._pending_cost + self._promised_cost + self._running_cost / 2.0
        return per_cost * held * self.threads_per_instance

    def forget_rate(self) -> None:
        """Forgets the compute rate learnt so far. A warm-up's first batches pay one-time
        costs (allocations, lazy loading, caches filling) that no later batch pays; learnt
        from them, a cold server's estimates are dear and its first burst mostly refused
        (docs/benchmarks.md, "Overload"). Warm up, forget, then learn from a second round."""
        self._rate = ServiceRate(self._rate.alpha)

    def reserve(
        self,
        cost: float,
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        items: int = 1,
        caller: Hashable | None = None,
    ) -> Reservation:
        """Admits work the caller will submit once it is prepared (audio decoded, text
        phonemized), holding its cost against later arrivals until released. Raises
        Overloaded, like ``submit``, when it is predicted to finish too late; release it
        just before submitting (or on failure) - ``with batcher.reserve(...)`` does.
        ``items``: how many requests the cost will be split into (they compute in
        parallel on the instances)."""
        if self._closed:
            self.observer.rejected("closed")
            raise BatcherClosed(f"{self.policy.name} is draining")
        spread = min(max(items, 1), self.instance_count)
        self._admit(float(cost) / spread, int(priority), timeout_s, caller)
        self._promised_cost += float(cost)
        self._promised[caller] = self._promised.get(caller, 0.0) + float(cost)
        return Reservation(self, float(cost), caller)

    def check_room(self, items: int, caller: Hashable | None = None) -> None:
        """Raises QueueFull when ``items`` more would pass max_queue_size, CallerOverloaded
        when they would pass the caller's own share of it."""
        policy = self.policy
        self._note_arrival(caller)
        if self._pending + items > policy.max_queue_size:
            self.observer.rejected("queue_full")
            more = "" if items == 1 else f"no room for {items} more: "
            raise QueueFull(
                f"{policy.name}: {more}{self._pending} requests already waiting "
                f"(max_queue_size={policy.max_queue_size})",
                policy.retry_after_s,
            )
        if (
            caller is not None
            and policy.max_caller_queue_share < 1
            and self._others_present(caller)
        ):
            held = self._caller_count.get(caller, 0)
            if held + items > policy.max_caller_queue:
                self.observer.rejected("caller_share")
                raise CallerOverloaded(
                    f"{policy.name}: this caller already has {held} requests waiting, the most "
                    f"one caller may hold ({policy.max_caller_queue_share:g} of the queue, "
                    "max_caller_queue_share); other callers are still served",
                    policy.retry_after_s,
                )

    def queue_share(self) -> tuple[int, float]:
        """(callers with work waiting, the largest one's share of the waiting cost): how
        far one caller dominates the queue (fair queuing keeps its effect on others small)."""
        total = sum(self._caller_queued.values())
        if total <= 0:
            return len(self._caller_queued), 0.0
        return len(self._caller_queued), max(self._caller_queued.values()) / total

    def _unqueue_caller(self, request: _Request[In, Out]) -> None:
        caller = request.caller
        if caller is None:
            return
        count = self._caller_count.get(caller, 0) - 1
        if count <= 0:
            self._caller_count.pop(caller, None)
            self._caller_queued.pop(caller, None)
            return
        self._caller_count[caller] = count
        self._caller_queued[caller] = max(self._caller_queued.get(caller, 0.0) - request.cost, 0.0)

    def _note_arrival(self, caller: Hashable | None) -> None:
        if caller is None:
            return
        self._arrivals[caller] = time.monotonic()
        self._arrivals.move_to_end(caller)

    def _others_present(self, caller: Hashable) -> bool:
        """Whether a caller other than ``caller`` arrived within caller_presence_s, or has
        work waiting or promised: only then is there anyone a share protects."""
        horizon = time.monotonic() - self.policy.caller_presence_s
        arrivals = self._arrivals
        while arrivals:
            oldest, when = next(iter(arrivals.items()))
            if when >= horizon:
                break
            del arrivals[oldest]
        return (
            len(arrivals) > (caller in arrivals)
            or len(self._caller_count) > (caller in self._caller_count)
            or len(self._promised) > (caller in self._promised) + (None in self._promised)
        )

    def _release(self, cost: float, caller: Hashable | None) -> None:
        self._promised_cost = max(self._promised_cost - cost, 0.0)
        left = self._promised.get(caller, 0.0) - cost
        if left <= 1e-9:
            self._promised.pop(caller, None)
        else:
            self._promised[caller] = left

    def estimated_finish_s(
        self,
        cost: float = 1.0,
        priority: int = 0,
        caller: Hashable | None = None,
        *,
        without_own: bool = False,
    ) -> float | None:
        """When a request submitted now should be done, in seconds; None until a batch has
        finished (nothing learnt yet). With ``caller``, only the work fair queuing puts
        ahead of it counts: a flood's backlog is not ahead of another caller's request."""
        per_cost = self._rate.seconds_per_cost
        if per_cost is None:
            return None
        ahead = self._ahead_cost(priority, caller, without_own=without_own)
        if self.device is None:
            return estimated_finish_s(
                per_cost,
                ahead_cost=ahead,
                running_cost=self._running_cost,
                instances=self.instance_count,
                own_cost=cost,
            )
        threads = self.threads_per_instance
        return shared_finish_s(
            own_backlog_core_s=per_cost * (ahead + self._running_cost / 2.0) * threads,
            own_width=min(self.width, self.device.parallelism),
            others=[(m.demand_core_s(), m.width) for m in self.device.others(self)],
            parallelism=self.device.parallelism,
            own_compute_s=per_cost * cost,
            own_threads=threads,
        )

    def _ahead_cost(
        self, priority: int, caller: Hashable | None, *, without_own: bool = False
    ) -> float:
        """Queued and promised cost that would be served before a request arriving now
        (``without_own``: leaving out the caller's own, to tell whose backlog it is)."""
        if caller is None or not self._callers_seen:
            if all(level >= priority for level, queue in self._queues.items() if queue):
                return self._pending_cost + self._promised_cost
            queued = sum(
                r.cost for level, queue in self._queues.items() if level >= priority for r in queue
            )
            return queued + self._promised_cost
        now = self._virtual_now()
        start = max(now, self._caller_clock.get(caller, now))
        if start >= self._latest_fair_at and not without_own:
            # Every waiting request's fair start is at or before this one's.
            queued = sum(c for level, c in self._level_cost.items() if level >= priority)
        else:
            queued = sum(
                r.cost
                for level, queue in self._queues.items()
                if level >= priority
                for r in queue
                if r.fair_at <= start and not (without_own and r.caller == caller)
            )
        # Promised work joins the queue at its caller's clock: ahead only if that is earlier.
        promised = sum(
            c
            for who, c in self._promised.items()
            if (who is None or who == caller or self._caller_clock.get(who, now) <= start)
            and not (without_own and who == caller)
        )
        return queued + promised

    def _virtual_now(self) -> float:
        """The system's virtual time (start-time fair queuing): the earliest fair start
        still waiting, or the last one dispatched when none waits. A new request's fair
        start is never before it, so a caller is owed nothing for the time it had no work,
        a rate estimate that is off shifts every caller alike, and of a backlog only its
        next request is ever due (the rest cannot age past other callers)."""
        heap = self._fair_heap
        if not self._pending:
            heap.clear()
            return self._dispatched_at
        while heap and heap[0][2].state != _QUEUED:
            heapq.heappop(heap)
        return min(heap[0][0], self._dispatched_at) if heap else self._dispatched_at

    def _remember_fair_start(self, request: _Request[In, Out]) -> None:
        heap = self._fair_heap
        heapq.heappush(heap, (request.fair_at, request.seq, request))
        if len(heap) > 2 * self._pending + 64:
            # Mostly requests that left below the top: keep the waiting ones only.
            self._fair_heap = [entry for entry in heap if entry[2].state == _QUEUED]
            heapq.heapify(self._fair_heap)

    def _fair_start(self, caller: Hashable | None, cost: float, now: float) -> float:
        """The request's fair start in virtual time (start-time fair queuing): its caller's
        clock, or the system's virtual time if that is later; the clock then moves on by
        the request's compute. Without a caller, the current virtual time."""
        vtime_now = self._virtual_now()
        if caller is None:
            return vtime_now
        self._callers_seen = True
        start = max(vtime_now, self._caller_clock.get(caller, vtime_now))
        per_cost = self._rate.seconds_per_cost or 1.0
        self._caller_clock[caller] = start + per_cost * cost / self.instance_count
        if len(self._caller_clock) > 4 * self.policy.max_queue_size:
            # Forget callers whose clocks have run out (no unbounded growth).
            self._caller_clock = {c: t for c, t in self._caller_clock.items() if t > vtime_now}
            self._caller_dispatched = {
                c: t for c, t in self._caller_dispatched.items() if c in self._caller_clock
            }
        return start

    def _admit(
        self, cost: float, priority: int, timeout_s: float | None, caller: Hashable | None
    ) -> float | None:
        """Raises Overloaded when the request is predicted to finish too late (the estimate
        scaled by the lateness learnt so far); returns the unscaled estimate, which its
        finish is later compared with (None until a rate is learnt)."""
        policy = self.policy
        self._note_arrival(caller)
        estimate = self.estimated_finish_s(cost, priority, caller)
        if estimate is None:
            return None
        late = self._lateness.factor
        finish = estimate * late
        limits = [t for t in (timeout_s, policy.latency_objective_s or None) if t is not None]
        if not policy.admission or not limits:
            return estimate
        limit = min(limits)
        admitted_until = limit * (1.0 - policy.admission_margin)
        if finish <= admitted_until:
            return estimate
        self.observer.rejected("admission")
        bound = "deadline" if timeout_s is not None and limit == timeout_s else "latency objective"
        message = (
            f"{policy.name}: estimated to finish in {finish:.1f} s, after its {bound} "
            f"({limit:.1f} s)"
        )
        retry = min(max(finish - admitted_until, 0.1), 60.0)
        if caller is not None and self._others_present(caller):
            alone = self.estimated_finish_s(cost, priority, caller, without_own=True)
            if alone is not None and alone * late <= admitted_until:
                # Retry once the caller's own waiting work is done, not as soon as the
                # overshoot has drained: a flood's many refused requests would otherwise
                # all come back for each place that frees (200 callers of one principal
                # retried ~170 times a second, taking the event loop from everyone).
                own_s = finish - alone * late
                raise CallerOverloaded(
                    message + ", behind this caller's own waiting work; retry once it is done",
                    retry_after_s=min(max(own_s, retry), 60.0),
                )
        raise Overloaded(message + "; retry later or on another replica", retry_after_s=retry)

    # ------------------------------------------------------------------ internals

    def _withdraw(self, request: _Request[In, Out]) -> None:
        """Takes a waiting request out of its queue (it will never be computed)."""
        self._queues[request.priority].remove(request)
        self._unqueue_caller(request)
        self._pending -= 1
        self._pending_cost -= request.cost
        self._take_level_cost(request.priority, request.cost)
        request.state = _DONE
        if request.timer is not None:
            request.timer.cancel()
        self.observer.pending_changed(self._pending)
        self._maybe_quiet()

    def _observe_unfinished(self, request: _Request[In, Out]) -> None:
        """A request that left the queue (deadline, caller gone) after its predicted finish
        was late by at least that much: the requests admitted too late are the ones that
        never finish, so they must count."""
        if request.predicted_s is None or self._loop is None:
            return
        waited = self._loop.time() - request.enqueued_at
        if waited > request.predicted_s:
            self._lateness.observe(predicted_s=request.predicted_s, actual_s=waited)

    def _expire(self, request: _Request[In, Out], *, redispatch: bool = True) -> None:
        if request.state != _QUEUED:
            return
        self._withdraw(request)
        self.observer.rejected("deadline")
        self._observe_unfinished(request)
        if not request.future.done():
            request.future.set_exception(
                DeadlineExpired(f"{self.policy.name}: deadline passed while queued")
            )
        if redispatch:
            self._dispatch()

    def _fail_queued(self, error: BaseException) -> None:
        for queue in list(self._queues.values()):
            for request in list(queue):
                self._withdraw(request)
                self.observer.rejected("closed")
                if not request.future.done():
                    request.future.set_exception(error)

    def _take_level_cost(self, level: int, cost: float) -> None:
        if self._queues.get(level):
            self._level_cost[level] = self._level_cost.get(level, 0.0) - cost
        else:
            self._level_cost.pop(level, None)  # empty: no float drift kept

    def _maybe_quiet(self) -> None:
        if not self._pending and not self._running:
            self._quiet.set()

    def _time_until_ready(self, now: float) -> float:
        """Seconds until the waiting requests should leave as a batch (<= 0: now)."""
        policy = self.policy
        if self._closed or self._pending >= policy.dispatch_size:
            return 0.0
        if policy.max_batch_cost and self._pending_cost >= policy.max_batch_cost:
            return 0.0
        oldest = min(queue[0].enqueued_at for queue in self._queues.values() if queue)
        until_delay = oldest + policy.max_queue_delay_s - now
        if self._adaptive is None:
            return until_delay
        wanted = self._adaptive.wait_s(now - oldest, self._pending, policy.max_batch_size)
        return min(until_delay, wanted)

    def _dispatch(self) -> None:
        """Forms batches while an instance is idle and the waiting requests are ready."""
        if not self._started:
            return
        loop = self._loop
        assert loop is not None
        while (self._idle or self._idle_express) and self._pending:
            now = loop.time()
            wait = self._time_until_ready(now)
            if wait > _EPSILON_S:
                self._arm_wake(now + wait)
                return
            if self._idle:
                batch = self._form_batch(now)
                if not batch:
                    continue  # every request it looked at had expired
                instance = self._idle.popleft()
            else:
                batch = self._form_batch(now, express=True)
                if not batch:
                    return  # nothing waits from a caller with nothing running
                instance = self._idle_express.popleft()
            task = loop.create_task(self._run(instance, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _arm_wake(self, when: float) -> None:
        if self._wake is not None:
            if abs(self._wake_at - when) <= _EPSILON_S:
                return
            self._wake.cancel()
        assert self._loop is not None
        self._wake_at = when
        self._wake = self._loop.call_at(when, self._on_wake)

    def _on_wake(self) -> None:
        self._wake = None
        self._dispatch()

    def _in_order(self, now: float) -> Iterator[_Request[In, Out]]:
        """Waiting requests, most urgent first: priority plus aging, then arrival."""
        levels = [queue for queue in self._queues.values() if queue]
        if len(levels) == 1 and not self._callers_seen:
            return iter(list(levels[0]))
        aging = self.policy.priority_aging_s
        cap = self.policy.priority_aging_max_levels or math.inf
        vtime = self._virtual_now()
        overtaken = self._caller_dispatched

        def level(r: _Request[In, Out]) -> float:
            # A request gains a level per priority_aging_s waited once its fair turn has
            # come: without limit when virtual time reached its fair start (nothing waits
            # forever); up to the cap when only its own caller's later work went first (a
            # caller's overtaken work catches up with its own kind, not past other
            # callers' new requests). One whose turn lies ahead (a flood's backlog) keeps
            # its level.
            gained = math.floor(max(now - r.enqueued_at, 0.0) / aging + 1e-9)
            if r.fair_at <= vtime:
                return r.priority + gained
            if r.caller is not None and r.fair_at <= overtaken.get(r.caller, -math.inf):
                return r.priority + min(gained, cap)
            return r.priority

        # The level reached, then the fair start, then arrival.
        return iter(
            sorted(
                itertools.chain.from_iterable(levels),
                key=lambda r: (-level(r), r.fair_at, r.seq),
            )
        )

    def _form_batch(self, now: float, *, express: bool = False) -> list[_Request[In, Out]]:
        """The next batch in order; ``express``: only requests of callers with nothing
        running (and one per caller, so it stays one caller's light work)."""
        policy = self.policy
        limit = policy.max_batch_size
        if policy.preferred_batch_sizes and not self._closed:
            oldest = min(queue[0].enqueued_at for queue in self._queues.values() if queue)
            if oldest + policy.max_queue_delay_s > now + _EPSILON_S:
                # Leaving early because a preferred size is reached: take exactly that
                # size; once the delay is over, Triton takes all it can.
                limit = policy.dispatch_size
        batch: list[_Request[In, Out]] = []
        cost = 0.0
        head_cost = 0.0
        for request in self._in_order(now):
            if len(batch) >= limit:
                break
            if request.deadline is not None and request.deadline <= now:
                self._expire(request, redispatch=False)
                continue
            if express and (
                self._caller_running.get(request.caller)
                or any(r.caller == request.caller for r in batch)
            ):
                continue
            if batch:
                if policy.similar_cost_ratio and not _similar(
                    head_cost, request.cost, policy.similar_cost_ratio
                ):
                    continue
                if policy.max_batch_cost and cost + request.cost > policy.max_batch_cost:
                    break
            else:
                head_cost = request.cost
            batch.append(request)
            cost += request.cost
        for request in batch:
            self._queues[request.priority].remove(request)
            self._take_level_cost(request.priority, request.cost)
            self._unqueue_caller(request)
            self._dispatched_at = max(self._dispatched_at, request.fair_at)
            if request.caller is not None:
                self._caller_dispatched[request.caller] = max(
                    self._caller_dispatched.get(request.caller, request.fair_at), request.fair_at
                )
            request.state = _RUNNING
            self._caller_running[request.caller] = self._caller_running.get(request.caller, 0) + 1
            if request.timer is not None:
                request.timer.cancel()
        self._pending -= len(batch)
        self._pending_cost -= cost
        if not self._pending:
            self._pending_cost = 0.0  # no float drift across millions of requests
        self._running += len(batch)
        self._running_cost += cost
        if batch:
            self.observer.pending_changed(self._pending)
            self.observer.batch_started(len(batch), cost, [now - r.enqueued_at for r in batch])
        return batch

    async def _run(self, instance: _Instance[In, Out], batch: list[_Request[In, Out]]) -> None:
        assert self._loop is not None
        device = self.device
        mark = device.enter(self.threads_per_instance) if device is not None else None
        started = time.perf_counter()
        try:
            outcomes: list[Out | BaseException] = await self._loop.run_in_executor(
                instance.executor, _run_isolating, instance.run_batch, [r.item for r in batch]
            )
        except BaseException as error:  # the executor itself failed; never strand callers
            outcomes = [error] * len(batch)
        elapsed = time.perf_counter() - started
        solo_s = elapsed
        if device is not None and mark is not None:
            # Learn the time it would have taken alone (see batcher.admission.SharedDevice).
            solo_s = elapsed / device.contention_since(mark)
            device.exit(self.threads_per_instance)
        failed = 0
        finished_at = self._loop.time()
        for request, outcome in zip(batch, outcomes, strict=True):
            request.state = _DONE
            if request.predicted_s is not None:
                self._lateness.observe(
                    predicted_s=request.predicted_s, actual_s=finished_at - request.enqueued_at
                )
            left = self._caller_running.get(request.caller, 0) - 1
            if left > 0:
                self._caller_running[request.caller] = left
            else:
                self._caller_running.pop(request.caller, None)
            if isinstance(outcome, BaseException):
                failed += 1
                if not request.future.done():
                    request.future.set_exception(outcome)
            elif not request.future.done():
                request.future.set_result(outcome)
        cost = sum(request.cost for request in batch)
        self._running -= len(batch)
        self._running_cost = max(self._running_cost - cost, 0.0) if self._running else 0.0
        self._rate.observe(cost=cost, seconds=solo_s)
        self.observer.batch_finished(len(batch), elapsed, failed)
        if self._adaptive is not None:
            self._adaptive.observe_batch(len(batch), elapsed)
        (self._idle_express if instance.express else self._idle).append(instance)
        self._maybe_quiet()
        self._dispatch()


class Reservation:
    """Admitted work not yet submitted (``Batcher.reserve``); release it once."""

    def __init__(self, batcher: Batcher[Any, Any], cost: float, caller: Hashable | None) -> None:
        self._batcher: Batcher[Any, Any] | None = batcher
        self.cost = cost
        self.caller = caller

    def release(self) -> None:
        if self._batcher is not None:
            self._batcher._release(self.cost, self.caller)
            self._batcher = None

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _similar(a: float, b: float, ratio: float) -> bool:
    low, high = min(a, b), max(a, b)
    return high <= low * ratio if low > 0 else high <= ratio


def _run_isolating(run_batch: BatchFunction[In, Out], items: list[In]) -> list[Out | BaseException]:
    """Runs one batch; when it fails as a whole, runs each item alone to isolate the bad one."""
    try:
        outcomes = list(run_batch(items))
        if len(outcomes) != len(items):
            raise RuntimeError(f"batch handler returned {len(outcomes)} results for {len(items)}")
        return [_future_safe(o) for o in outcomes]
    except Exception as error:
        if len(items) == 1:
            return [error]
        log.warning("batch of %d failed (%r); retrying items one by one", len(items), error)
    isolated: list[Out | BaseException] = []
    for item in items:
        try:
            (outcome,) = run_batch([item])
            isolated.append(_future_safe(outcome))
        except Exception as error:
            isolated.append(error)
    return isolated


def _future_safe(outcome: Out | BaseException) -> Out | BaseException:
    # asyncio futures refuse StopIteration as an exception.
    if isinstance(outcome, StopIteration):
        return RuntimeError(f"handler raised StopIteration: {outcome}")
    return outcome


__all__ = ["BatchFunction", "Batcher", "HandlerFactory", "RequestCancelled", "Reservation"]
