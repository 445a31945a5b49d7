"""A circuit breaker for the Redis tier: one failure opens it, time half-opens it.

Why open on the first failure: every Redis call of a request is on its critical path, so a
dead or hung Redis would add a full timeout to each request until a threshold is reached;
with caching an optimisation, not a dependency, the cheapest outage is the one we stop
trying at once. After ``cooldown_s`` one probe call is let through; its success closes the
breaker, its failure opens it for another cooldown. The outage is logged once when it
starts and once when it ends, never per request.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from speech_platform import metrics

logger = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        cooldown_s: float,
        *,
        name: str = "redis",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown_s = cooldown_s
        self.name = name
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_started_at = 0.0
        self.outages = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def is_open(self) -> bool:
        """True while calls are being skipped (open, or half-open with a probe out)."""
        return self._state is not BreakerState.CLOSED

    def allow(self) -> bool:
        """Whether a call may go to the backend now. In half-open state exactly one caller
        (the probe) is let through; a probe that never reports back (its task was
        cancelled) is replaced after another cooldown, so the breaker cannot get stuck."""
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if self._state is BreakerState.OPEN:
            if now - self._opened_at < self.cooldown_s:
                return False
        elif now - self._probe_started_at < self.cooldown_s:
            return False
        self._state = BreakerState.HALF_OPEN
        self._probe_started_at = now
        return True

    def record_success(self) -> None:
        # Only the probe closes an open breaker: a call that started before the outage and
        # succeeded late says nothing about Redis now.
        if self._state is not BreakerState.HALF_OPEN:
            return
        self._state = BreakerState.CLOSED
        metrics.CACHE_BREAKER_OPEN.set(0)
        logger.warning(
            "%s cache is reachable again; using it", self.name,
            extra={"backend": self.name, "event": "cache_recovered"},
        )

    def record_failure(self, error: BaseException) -> None:
        if self._state is BreakerState.OPEN:
            return  # a straggler of the same outage; do not extend the cooldown
        was_closed = self._state is BreakerState.CLOSED
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        metrics.CACHE_BREAKER_OPEN.set(1)
        if was_closed:
            self.outages += 1
            logger.warning(
                "%s cache failed (%s: %s); serving without it, retrying in %.1fs",
                self.name, type(error).__name__, error, self.cooldown_s,
                extra={"backend": self.name, "event": "cache_unavailable"},
            )
