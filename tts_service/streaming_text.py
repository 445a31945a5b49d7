"""Text arriving piece by piece (an LLM's tokens) cut into sentences as soon as they complete.

``SentenceCutter`` keeps the text not yet spoken and, on each new piece, normalises it
(tts_service.text) and looks for sentence ends there, where the whole-text path looks for
them: "Dr. Smith" is "Doctor Smith" before anyone looks for a full stop, so the same text sent
at once or token by token is cut into the same sentences (and, with a deterministic voice,
sounds the same). An end counts only once something other than space follows it: "St." may
still become "Saint Louis", "3." may become "3.5".

Two fallbacks keep a run-on sentence from holding audio back: past ``clause_chars``
characters it is cut at its last clause mark (, ; :) or, lacking one, its last whole word; and
``segments`` applies the same cut once the oldest unspoken text has waited ``max_wait_s``.
A flush (or the end of the input) sends out whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from speech_platform.config import TtsSettings
from speech_platform.errors import InvalidArgument
from tts_service.alignment import AlignedText
from tts_service.text import SENTENCE_END, is_speakable, normalize_aligned

_CLAUSE_MARK = re.compile(r"[,;:](?=\s+\S)")
_WORD_GAP = re.compile(r"\s+(?=\S)")
_LINE_BREAK = re.compile(r"\n(?=\s*\S)")


class Flush:
    """Speak what is buffered now (the end of a turn)."""


FLUSH = Flush()


@dataclass(frozen=True)
class Segment:
    """Text ready to be spoken: a slice of everything the client sent."""

    text: str
    #: Where ``text`` starts in the concatenation of every piece sent, in code points.
    start: int
    #: time.perf_counter() when it became ready (time to first audio counts from here).
    ready_at: float


@dataclass(frozen=True)
class CutOptions:
    max_wait_s: float = 2.0
    clause_chars: int = 200
    #: The most characters the whole stream may carry (the server's per-request limit).
    max_total_chars: int = 5000


def cut_options(max_wait_ms: int, clause_chars: int, settings: TtsSettings) -> CutOptions:
    """A client's options, validated; 0 takes the server's (tts.text_stream_*)."""
    if max_wait_ms < 0 or max_wait_ms > 60_000:
        raise InvalidArgument(f"max_sentence_wait_ms must be 0..60000; got {max_wait_ms}")
    if clause_chars and not 40 <= clause_chars <= 1000:
        raise InvalidArgument(f"clause_fallback_chars must be 0 or 40..1000; got {clause_chars}")
    return CutOptions(
        max_wait_s=(max_wait_ms or settings.text_stream_max_wait_ms) / 1000,
        clause_chars=clause_chars or settings.text_stream_clause_chars,
        max_total_chars=settings.max_text_chars,
    )


class SentenceCutter:
    """The unspoken text, and the sentences that can be cut from it."""

    def __init__(self, options: CutOptions) -> None:
        self.options = options
        self._pending = ""
        self._start = 0  # where _pending starts in everything sent
        self._total = 0
        #: time.perf_counter() when the oldest unspoken text arrived (None: nothing pending).
        self.waiting_since: float | None = None

    def feed(self, piece: str) -> list[Segment]:
        self._total += len(piece)
        if self._total > self.options.max_total_chars:
            raise InvalidArgument(
                f"the text stream has {self._total} characters; this server takes at most "
                f"{self.options.max_total_chars} per stream (open a new stream per answer)"
            )
        if not piece:
            return []
        if self.waiting_since is None and piece.strip():
            self.waiting_since = time.perf_counter()
        self._pending += piece
        normalized = normalize_aligned(self._pending)  # once per piece: linear in the text
        segments = []
        taken = 0
        for cut in _sentence_ends(normalized):
            segments.append(self._take(cut - taken))
            taken = cut
        if segments:
            normalized = normalize_aligned(self._pending)
        if len(normalized) > self.options.clause_chars:
            # A run-on sentence: cut at its last clause mark or word, or, with neither (one
            # endless "word"), cut it all, so the unspoken text stays short.
            segments.append(self._take(_last_cut(normalized) or len(self._pending)))
        return [s for s in segments if s.text.strip()]

    def cut_waiting(self) -> list[Segment]:
        """The cut after the wait ran out: at the last clause mark or whole word."""
        cut = _last_cut(normalize_aligned(self._pending))
        if cut is None:  # one unfinished word: wait for the next piece
            self.waiting_since = None
            return []
        return [self._take(cut)]

    def flush(self) -> list[Segment]:
        if not self._pending.strip():
            self._start += len(self._pending)
            self._pending = ""
            self.waiting_since = None
            return []
        return [self._take(len(self._pending))]

    def _take(self, cut: int) -> Segment:
        segment = Segment(self._pending[:cut], self._start, time.perf_counter())
        self._pending = self._pending[cut:]
        self._start += cut
        self.waiting_since = time.perf_counter() if self._pending.strip() else None
        return segment


def _sentence_ends(normalized: AlignedText) -> list[int]:
    """Client-text offsets just after each complete sentence, in order (an end counts once
    text follows it, and a sentence needs a letter to say)."""
    text = normalized.text
    last_text = len(text.rstrip())
    ends = sorted(
        {m.end() for m in SENTENCE_END.finditer(text)}
        | {m.start() for m in _LINE_BREAK.finditer(text)}
    )
    cuts: list[int] = []
    previous = 0
    for end in ends:
        if end < last_text and is_speakable(text[previous:end]):
            cut = normalized.ends[end - 1]
            if not cuts or cut > cuts[-1]:
                cuts.append(cut)
                previous = end
    return cuts


def _last_cut(normalized: AlignedText) -> int | None:
    """The client-text offset after the last clause mark, else before the last word."""
    text = normalized.text
    clause = [m.end() for m in _CLAUSE_MARK.finditer(text)]
    if clause and is_speakable(text[: clause[-1]]):
        return normalized.ends[clause[-1] - 1]
    gaps = [m.start() for m in _WORD_GAP.finditer(text)]
    if gaps and is_speakable(text[: gaps[-1]]):
        return normalized.ends[gaps[-1] - 1]
    return None


async def segments(
    pieces: AsyncIterator[str | Flush], options: CutOptions
) -> AsyncGenerator[Segment, None]:
    """Sentences from text pieces as they arrive, with the wait fallback on a timer."""
    cutter = SentenceCutter(options)
    inbox: asyncio.Queue[str | Flush | BaseException | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for piece in pieces:
                await inbox.put(piece)
            await inbox.put(None)
        except BaseException as error:  # the client's stream failed: the cutter sees it
            await inbox.put(error)
            raise

    reader = asyncio.create_task(read())
    try:
        while True:
            timeout = None
            if cutter.waiting_since is not None:
                timeout = max(0.0, cutter.waiting_since + options.max_wait_s - time.perf_counter())
            try:
                message = await asyncio.wait_for(inbox.get(), timeout)
            except TimeoutError:
                for segment in cutter.cut_waiting():
                    yield segment
                continue
            if message is None:
                for segment in cutter.flush():
                    yield segment
                return
            if isinstance(message, BaseException):
                raise message
            ready = cutter.flush() if isinstance(message, Flush) else cutter.feed(message)
            for segment in ready:
                yield segment
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
