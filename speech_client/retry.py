"""Retries of refused calls, waiting as long as the server asks.

The server refuses work it cannot take now (a full queue, admission, stream caps, the
memory budget) with RESOURCE_EXHAUSTED, and a draining replica with UNAVAILABLE; both carry
a google.rpc.Status in the ``grpc-status-details-bin`` trailer whose RetryInfo says when to
come back (speech_platform/interceptors.py). Honouring it spreads clients over the time the
server needs instead of hammering it; without one, the wait doubles from ``base_delay_s``.
Any other code is not retried: it would fail the same way again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class RetryPolicy:
    #: Calls in all, the first one included (1 = never retry).
    max_attempts: int = 4
    #: First wait when the server gave no RetryInfo; doubles on each retry.
    base_delay_s: float = 0.25
    #: No single wait is longer than this, whatever the server asks.
    max_delay_s: float = 30.0

    def delay_for(self, error: grpc.RpcError, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` after ``error``."""
        asked = retry_delay(error)
        wait = asked if asked is not None else self.base_delay_s * 2 ** (attempt - 1)
        return min(wait, self.max_delay_s)


def retry_delay(error: grpc.RpcError) -> float | None:
    """The delay in the error's RetryInfo (or its retry-after-ms trailer), if it has one."""
    trailers = _trailers(error)
    details = trailers.get("grpc-status-details-bin")
    if isinstance(details, bytes):
        status = status_pb2.Status.FromString(details)
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    after_ms = trailers.get("retry-after-ms")
    if isinstance(after_ms, str) and after_ms.isdigit():
        return int(after_ms) / 1000
    return None


def _trailers(error: grpc.RpcError) -> dict[str, str | bytes]:
    trailing = getattr(error, "trailing_metadata", None)
    return dict(trailing() or ()) if callable(trailing) else {}


def error_code(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


@dataclass(frozen=True)
class Retry:
    """One retry about to happen: what was refused and how long the client waits."""

    attempt: int
    code: grpc.StatusCode
    message: str
    delay_s: float
    #: True when the delay is the server's (RetryInfo), false for the client's backoff.
    from_server: bool


class Deadline:
    """An overall time limit across attempts and waits (``None``: no limit)."""

    def __init__(self, timeout_s: float | None) -> None:
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        return None if self._end is None else max(self._end - time.monotonic(), 0.0)

    def allows_wait(self, seconds: float) -> bool:
        left = self.remaining()
        return left is None or seconds < left


def next_retry(
    error: grpc.RpcError, attempt: int, policy: RetryPolicy, deadline: Deadline
) -> Retry | None:
    """The retry to make after ``error`` on ``attempt``, or None when the call should fail."""
    code = error_code(error)
    if code not in RETRYABLE or attempt >= policy.max_attempts:
        return None
    delay = policy.delay_for(error, attempt)
    if not deadline.allows_wait(delay):
        return None
    details = getattr(error, "details", None)
    message = (details() if callable(details) else None) or str(error)
    assert code is not None
    return Retry(attempt, code, message, delay, retry_delay(error) is not None)


RetryListener = Callable[[Retry], None]
