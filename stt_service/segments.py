"""Reads Whisper's timestamp tokens back into timed segments.

Whisper writes ``<|t0|> text <|t1|><|t1|> more text <|t2|>``: a timestamp token opens a
segment and the next one after some text closes it (two in a row: close, then open).
Timestamps count 20 ms steps from the window's start. A decode that stops in the middle of
a segment (the window was cut) leaves its last segment open; it runs to the window's end.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds per timestamp step.
TIME_PRECISION = 0.02


@dataclass(frozen=True)
class TimedTokens:
    """The text tokens of one segment and its times, relative to its window."""

    start: float
    end: float
    tokens: tuple[int, ...]


def split_segments(
    tokens: list[int],
    *,
    eot: int,
    timestamp_begin: int,
    window_duration: float,
) -> list[TimedTokens]:
    """Segments in decoding order; times clamped to [0, window_duration], end >= start.

    ``tokens`` is a generated sequence without its prompt. Special tokens other than
    timestamps (ids >= ``eot`` and < ``timestamp_begin``) are dropped.
    """
    segments: list[TimedTokens] = []
    opened_at: float | None = None
    last_close = 0.0
    text: list[int] = []
    for token in tokens:
        if token >= timestamp_begin:
            moment = (token - timestamp_begin) * TIME_PRECISION
            if text:
                segments.append(_segment(opened_at, last_close, moment, text, window_duration))
                text = []
                last_close = moment
                opened_at = None
            else:
                opened_at = moment
        elif token < eot:
            text.append(token)
    if text:
        segments.append(_segment(opened_at, last_close, window_duration, text, window_duration))
    return segments


def _segment(
    opened_at: float | None, last_close: float, end: float, text: list[int], limit: float
) -> TimedTokens:
    start = last_close if opened_at is None else opened_at
    start = min(max(start, 0.0), limit)
    end = min(max(end, start), limit)
    return TimedTokens(round(start, 3), round(end, 3), tuple(text))
