"""A request's deadline over HTTP, so admission and queue expiry work as with gRPC's.

gRPC carries a deadline with every call; HTTP has none, so the door reads one from a
header: ``X-Request-Timeout`` (seconds; ours), else ``X-Stainless-Timeout`` (the seconds
OpenAI's SDKs send with every request: their client timeout, 600 s unless set). Without
either, the request has no deadline, like a gRPC call without one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from speech_http.errors import HttpError

HEADERS = ("x-request-timeout", "x-stainless-timeout")

#: Seconds left (None: no deadline), asked at each step like gRPC's time_remaining.
TimeRemaining = Callable[[], float | None]


def time_remaining(headers: Mapping[str, str]) -> TimeRemaining:
    """The time-remaining function of a request; 400 for a header that is not seconds."""
    for name in HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise HttpError(
                400, f"{name} must be a positive number of seconds, got {value!r}",
                code="invalid_value", param=name,
            )  # fmt: skip
        deadline = time.monotonic() + seconds
        return lambda: deadline - time.monotonic()
    return lambda: None
