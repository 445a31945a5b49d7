"""LogThrottle: a line per key per interval, and the next line says how many were held."""

from __future__ import annotations

import logging

import pytest

from speech_platform.logs import LogThrottle


def test_one_line_per_key_per_interval_and_the_next_counts_the_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttle = LogThrottle(logging.getLogger("throttled"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="throttled"):
        for _ in range(1000):
            throttle.warning(("piper", "kokoro", "overloaded"), "tts fallback", reason="x")
        throttle.warning(("kokoro", "piper", "overloaded"), "tts fallback", reason="y")
        now[0] += 9.9
        throttle.warning(("piper", "kokoro", "overloaded"), "tts fallback", reason="x")
        now[0] += 0.1
        throttle.warning(("piper", "kokoro", "overloaded"), "tts fallback", reason="x")
    lines = [(r.reason, r.suppressed) for r in caplog.records]  # type: ignore[attr-defined]
    # First of each key at once; the 999 + 1 held back are counted on the next line.
    assert lines == [("x", 0), ("y", 0), ("x", 1000)]
