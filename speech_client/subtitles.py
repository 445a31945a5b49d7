"""SubRip (SRT) and WebVTT text from timed transcript pieces.

Pure functions over ``Cue`` (start, end, text), shared by ``speechctl --format srt|vtt``
and the server's HTTP API (``response_format=srt|vtt``): they live in the client package,
which depends on nothing of the server, so both can import them.

    >>> print(to_srt([Cue(0.0, 1.5, " Hello there."), Cue(61.25, 3723.004, "Bye")]), end="")
    1
    00:00:00,000 --> 00:00:01,500
    Hello there.
    <BLANKLINE>
    2
    00:01:01,250 --> 01:02:03,004
    Bye
    >>> print(to_vtt([Cue(0.0, 1.5, "a --> b")]), end="")
    WEBVTT
    <BLANKLINE>
    00:00:00.000 --> 00:00:01.500
    a --&gt; b
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cue:
    """One subtitle: seconds from the start of the recording, and its text."""

    start: float
    end: float
    text: str


def timestamp(seconds: float, separator: str) -> str:
    """HH:MM:SS<sep>mmm, rounded to the millisecond (negative times clamp to zero).

    >>> timestamp(3599.9996, ",")
    '01:00:00,000'
    """
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _lines(text: str) -> str:
    # A blank line ends a cue in both formats, so blank lines inside a text are dropped.
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _kept(cues: Iterable[Cue]) -> list[Cue]:
    return [cue for cue in cues if _lines(cue.text)]


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip: numbered cues, ``,`` before the milliseconds."""
    blocks = [
        f"{number}\n{timestamp(cue.start, ',')} --> {timestamp(max(cue.end, cue.start), ',')}\n"
        f"{_lines(cue.text)}\n"
        for number, cue in enumerate(_kept(cues), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT: a ``WEBVTT`` header, ``.`` before the milliseconds, and the three characters
    the format reserves in cue text escaped."""
    blocks = ["WEBVTT\n"]
    for cue in _kept(cues):
        text = _lines(cue.text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        blocks.append(
            f"{timestamp(cue.start, '.')} --> {timestamp(max(cue.end, cue.start), '.')}\n{text}\n"
        )
    return "\n".join(blocks)
