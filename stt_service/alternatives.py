"""N-best transcripts from the beam search: per window, and combined for a whole response.

**Per window.** CTranslate2's beam search can return its ``num_hypotheses`` best finished
hypotheses with their scores (the length-normalised log-probability it ranks them by); the
best one is the transcript, unchanged (asking for more hypotheses does not change the
search, a test checks it). The first alternative of a window is always exactly the text
of the segments kept from it. When Whisper left the window's last segment open and the
rest of the window is decoded again (the seek rule, see whisper_engine), the other
hypotheses are cut at the same time as the first, so every alternative of a window covers
the same audio. Hypotheses that read the same after cutting are merged (the first, best
scored, stays).

**Per response.** A response's hypothesis picks one alternative per window, in time order;
its score is the mean of the picked windows' scores (every hypothesis has one score per
window, so ranking by the mean is ranking by the sum). ``combine`` returns the N best such
combinations exactly: the N best of a product are found among the N best of its first k
factors' product extended by the next factor's alternatives. All-first is always ranked
first, so the response's first alternative is its text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Languages written without spaces: their segments join without one.
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


@dataclass(frozen=True)
class Alternative:
    text: str
    #: Mean log-probability per token as the beam ranks it (<= 0; higher is likelier).
    score: float


@dataclass(frozen=True)
class WindowAlternatives:
    """The N-best of one decoded window; times absolute (set in assembly)."""

    start_seconds: float
    end_seconds: float
    alternatives: tuple[Alternative, ...]
    #: 1-based channel with per-channel recognition; 0 otherwise.
    channel_tag: int = 0


def joiner_for(language: str) -> str:
    """What goes between two segments' texts in ``language``."""
    return "" if language in UNSPACED_LANGUAGES else " "


def join_texts(texts: Sequence[str], language: str) -> str:
    """Segment texts joined the way a transcript's text is (stripped, blanks dropped)."""
    return joiner_for(language).join(t.strip() for t in texts if t.strip())


def cut_at(tokens: Sequence[int], timestamp_begin: int, at_s: float | None) -> list[int]:
    """``tokens`` up to and including the first timestamp at or after ``at_s`` (window
    time); all of them when ``at_s`` is None or no timestamp reaches it.

    >>> cut_at([100, 1, 150, 150, 2, 180], 100, 1.0)
    [100, 1, 150]
    >>> cut_at([100, 1, 120], 100, 1.0)
    [100, 1, 120]
    """
    if at_s is None:
        return list(tokens)
    for index, token in enumerate(tokens):
        if token >= timestamp_begin and (token - timestamp_begin) * 0.02 >= at_s - 1e-6:
            return list(tokens[: index + 1])
    return list(tokens)


def window_alternatives(
    top_text: str,
    hypotheses: Sequence[tuple[Sequence[int], float]],
    *,
    text_of: Callable[[list[int]], str],
    timestamp_begin: int,
    resume_at: float | None,
    limit: int,
) -> tuple[Alternative, ...]:
    """Up to ``limit`` alternatives of one window, best first.

    ``top_text`` is the window's transcript (what its kept segments read);
    ``hypotheses`` are the beam's (tokens, score), best first, the first being the one
    that gave ``top_text``; ``text_of`` turns generated tokens into text joined like a
    transcript. Nothing when the window has no text.
    """
    if not top_text or not hypotheses or limit <= 0:
        return ()
    found = [Alternative(top_text, float(hypotheses[0][1]))]
    seen = {top_text}
    for tokens, score in hypotheses[1:]:
        if len(found) >= limit:
            break
        text = text_of(cut_at(tokens, timestamp_begin, resume_at))
        if text and text not in seen:
            seen.add(text)
            found.append(Alternative(text, float(score)))
    return tuple(found)


def combine(
    per_window: Sequence[Sequence[Alternative]], *, limit: int, language: str
) -> list[Alternative]:
    """The ``limit`` best whole-response hypotheses (see the module docstring).

    >>> a = [Alternative("a", -0.1), Alternative("b", -0.5)]
    >>> c = [Alternative("c", -0.2), Alternative("d", -0.3)]
    >>> [(x.text, round(x.score, 2)) for x in combine([a, c], limit=3, language="en")]
    [('a c', -0.15), ('a d', -0.2), ('b c', -0.35)]
    """
    windows = [list(w) for w in per_window if w]
    if limit <= 0 or not windows:
        return []
    # (sum of scores, the index picked in each window so far); all-first stays first on ties
    beam: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    for alternatives in windows:
        extended = [
            (total + alternative.score, (*picks, index))
            for total, picks in beam
            for index, alternative in enumerate(alternatives)
        ]
        extended.sort(key=lambda entry: (-entry[0], entry[1]))
        beam = extended[:limit]
    combined: list[Alternative] = []
    seen: set[str] = set()
    for total, picks in beam:
        text = join_texts([w[i].text for w, i in zip(windows, picks, strict=True)], language)
        if text not in seen:
            seen.add(text)
            combined.append(Alternative(text, total / len(windows)))
    return combined
