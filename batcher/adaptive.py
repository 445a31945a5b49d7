"""Adaptive waiting: hold a batch open only while waiting pays.

A fixed ``max_queue_delay`` is a guess: too short and batches stay small under moderate
load, too long and every request pays it when batching gains nothing (Whisper with beam 1
on a CPU is compute bound: a batch of N costs N singles). This learns, online, the cost of
a batch as ``t(n) = fixed + per_item * n`` and the gap between arrivals, then waits for one
more request only when

* the next request is expected sooner than the fixed cost it would save by sharing a batch
  (``gap < fixed``), and
* the oldest waiting request would still finish within the latency target.

Otherwise the batch leaves now. ``max_queue_delay`` stays a hard cap.

    >>> a = AdaptiveDelay(target_latency_s=0.1, max_delay_s=0.02)
    >>> for n in (1, 2, 4, 8):
    ...     a.observe_batch(n, 0.010 + 0.001 * n)   # large fixed cost: batching pays
    >>> for t in range(10):
    ...     a.observe_arrival(t * 0.002)            # a request every 2 ms
    >>> round(a.wait_s(oldest_wait_s=0.0, pending=1, max_batch_size=8), 4)
    0.002
"""

from __future__ import annotations


class AdaptiveDelay:
    def __init__(self, target_latency_s: float, max_delay_s: float, alpha: float = 0.05) -> None:
        self.target_latency_s = target_latency_s
        self.max_delay_s = max_delay_s
        self.alpha = alpha
        # exponentially weighted sums for a least-squares fit of t = fixed + per_item * n
        self._w = self._n = self._t = self._nn = self._nt = 0.0
        self._gap: float | None = None
        self._last_arrival: float | None = None

    def observe_arrival(self, now: float) -> None:
        if self._last_arrival is not None:
            gap = max(now - self._last_arrival, 0.0)
            self._gap = gap if self._gap is None else self._gap + self.alpha * (gap - self._gap)
        self._last_arrival = now

    def observe_batch(self, size: int, seconds: float) -> None:
        decay = 1.0 - self.alpha
        self._w = self._w * decay + 1.0
        self._n = self._n * decay + size
        self._t = self._t * decay + seconds
        self._nn = self._nn * decay + size * size
        self._nt = self._nt * decay + size * seconds

    def cost_model(self) -> tuple[float, float] | None:
        """(fixed, per_item) seconds, or None until batches of two sizes were seen."""
        if self._w == 0:
            return None
        mean_n, mean_t = self._n / self._w, self._t / self._w
        var_n = self._nn / self._w - mean_n * mean_n
        if var_n <= 1e-9:
            return None
        per_item = max((self._nt / self._w - mean_n * mean_t) / var_n, 0.0)
        fixed = max(mean_t - per_item * mean_n, 0.0)
        return fixed, per_item

    def wait_s(self, oldest_wait_s: float, pending: int, max_batch_size: int) -> float:
        """How much longer to hold the waiting requests (0: dispatch now)."""
        if pending >= max_batch_size:
            return 0.0
        model = self.cost_model()
        if model is None or self._gap is None:
            # Nothing learnt yet: behave like the fixed delay so that batches of several
            # sizes get observed.
            return max(self.max_delay_s - oldest_wait_s, 0.0)
        fixed, per_item = model
        if self._gap >= fixed:
            return 0.0
        projected = oldest_wait_s + self._gap + fixed + per_item * (pending + 1)
        if projected > self.target_latency_s:
            return 0.0
        return min(self._gap, max(self.max_delay_s - oldest_wait_s, 0.0))
