"""The circuit breaker: opens on a failure, one probe after the cooldown, logs per outage."""

from __future__ import annotations

import logging

import pytest

from speech_platform.cache.breaker import BreakerState, CircuitBreaker
from tests.platform.cache.helpers import metric


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_open_then_half_open_probe_then_closed(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(5.0, clock=clock)
    caplog.set_level(logging.WARNING, logger="speech_platform.cache.breaker")
    assert breaker.allow()
    breaker.record_failure(ConnectionError("refused"))
    assert breaker.state is BreakerState.OPEN
    assert metric("speech_cache_breaker_open") == 1
    assert not breaker.allow()
    clock.now = 4.9
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one probe at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert metric("speech_cache_breaker_open") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # one at the start of the outage, one at its end
    assert "failed" in messages[0] and "reachable again" in messages[1]


def test_failed_probe_reopens_without_logging_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1.0, clock=clock)
    caplog.set_level(logging.WARNING, logger="speech_platform.cache.breaker")
    breaker.record_failure(TimeoutError())
    for step in range(1, 6):
        clock.now = step * 1.0
        assert breaker.allow()
        breaker.record_failure(TimeoutError())
        assert not breaker.allow()
    assert breaker.outages == 1
    assert len(caplog.records) == 1


def test_stragglers_do_not_close_or_extend_an_outage() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2.0, clock=clock)
    breaker.record_failure(OSError())
    clock.now = 1.5
    breaker.record_success()  # a call that began before the outage
    assert breaker.state is BreakerState.OPEN
    breaker.record_failure(OSError())  # another one: the cooldown is not restarted
    clock.now = 2.0
    assert breaker.allow()


def test_lost_probe_is_replaced_after_a_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1.0, clock=clock)
    breaker.record_failure(OSError())
    clock.now = 1.0
    assert breaker.allow()  # probe whose task is then cancelled: it never reports
    clock.now = 1.5
    assert not breaker.allow()
    clock.now = 2.0
    assert breaker.allow()
