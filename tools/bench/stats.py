"""Summaries of measured latencies and of word error rate.

Percentiles use linear interpolation between closest ranks (numpy's default), so a p99 of
fewer than 100 samples is an interpolation, not an observed value; the sample count is
always reported with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencySummary:
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        if not seconds:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(
            count=len(ms),
            mean_ms=float(ms.mean()),
            p50_ms=float(p50),
            p95_ms=float(p95),
            p99_ms=float(p99),
            max_ms=float(ms.max()),
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# -- word error rate -------------------------------------------------------------------------

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
)


def _spell(number: int) -> str:
    """Whisper writes "10" where the reference says "ten"; spell small numbers out."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    return str(number)


def normalise_words(text: str) -> list[str]:
    """Lower case, no punctuation, small numbers spelled out: the form references use."""
    text = re.sub(r"\d+", lambda m: _spell(int(m.group())), text.lower())
    text = re.sub(r"[^a-z0-9' ]+", " ", text.replace("-", " "))
    return [w.strip("'") for w in text.split() if w.strip("'")]


def word_edits(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ref_word != hyp_word),
            )
        previous = current
    return previous[-1]


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float | None:
    """Summed word edits over summed reference words, for (reference, hypothesis) pairs.

    >>> corpus_wer([("go forward ten meters", "Go forward 10 meters.")])
    0.0
    """
    edits = words = 0
    for reference, hypothesis in pairs:
        ref = normalise_words(reference)
        edits += word_edits(ref, normalise_words(hypothesis))
        words += len(ref)
    return edits / words if words else None


# -- isolation -------------------------------------------------------------------------------


def transcript_words(text: str | None) -> tuple[str, ...]:
    """The word sequence of a transcript with case and punctuation normalised away (numbers
    stay as written: "33 4 692" and "33 for 692" are different transcripts).

    >>> transcript_words("Go forward, 10 meters!") == transcript_words("go forward 10 meters")
    True
    >>> transcript_words("33-4-692.")
    ('33', '4', '692')
    """
    if not text:
        return ()
    text = re.sub(r"[^\w' ]+", " ", text.lower().replace("-", " ").replace("_", " "))
    return tuple(w.strip("'") for w in text.split() if w.strip("'"))


@dataclass(frozen=True)
class IsolationCount:
    """How many transcripts served under concurrent load differ from the same request
    served alone to the same system (the goal is 0)."""

    compared: int
    differ: int
    #: Requests whose transcript under load was never seen alone (no solo answer).
    unmatched: int
    #: A few differences, (label, alone, under load), for the report.
    examples: tuple[tuple[str, str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "differ": self.differ,
            "unmatched": self.unmatched,
            "examples": [
                {"request": label, "alone": alone, "under_load": loaded}
                for label, alone, loaded in self.examples
            ],
        }


def count_isolation(
    answers: Iterable[tuple[bytes, str, str | None]],
    alone: dict[bytes, str | None],
    *,
    max_examples: int = 3,
) -> IsolationCount:
    """``answers``: (request payload, label, transcript under load); ``alone``: payload ->
    the transcript the same system gave that request served alone."""
    compared = differ = unmatched = 0
    examples: list[tuple[str, str, str]] = []
    for payload, label, text in answers:
        if payload not in alone or alone[payload] is None:
            unmatched += 1
            continue
        compared += 1
        solo = alone[payload]
        if transcript_words(text) != transcript_words(solo):
            differ += 1
            if len(examples) < max_examples:
                examples.append((label, solo or "", text or ""))
    return IsolationCount(compared, differ, unmatched, tuple(examples))
