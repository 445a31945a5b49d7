"""Text that remembers where each of its characters came from.

Normalisation rewrites what people type ("$3.50" becomes "three dollars and fifty cents"),
yet word timings, marks and the bidirectional stream's sentence cuts must point at the text
the client sent. ``AlignedText`` carries, for every character, the span of the original text
it stands for; every rewrite step (character maps, regular-expression substitutions, strip)
keeps that map, so a word of the spoken text maps back to the characters it was made from.

A replacement's characters all stand for the whole span of what they replaced; characters a
step leaves alone keep their own span.

>>> import re
>>> t = AlignedText.of("Pay $5 now").sub(re.compile(r"\\$5"), lambda m: "five dollars")
>>> t.text, t.source_span(4, 16)
('Pay five dollars now', (4, 6))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Replacement = str | Callable[[re.Match[str]], str]


@dataclass(frozen=True)
class AlignedText:
    """``text`` with ``starts[i], ends[i]``: the original span character ``i`` stands for."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def of(cls, original: str) -> AlignedText:
        positions = tuple(range(len(original)))
        return cls(original, positions, tuple(p + 1 for p in positions))

    @classmethod
    def join(cls, pieces: Iterable[tuple[str, int, int]]) -> AlignedText:
        """Text built piece by piece, each piece standing for one original span."""
        text: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        for piece, start, end in pieces:
            text.append(piece)
            starts.extend([start] * len(piece))
            ends.extend([end] * len(piece))
        return cls("".join(text), tuple(starts), tuple(ends))

    def __len__(self) -> int:
        return len(self.text)

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that characters ``[start, end)`` stand for."""
        if not self.text:
            return (0, 0)
        start = min(max(start, 0), len(self.text) - 1)
        end = min(max(end, start + 1), len(self.text))
        return (min(self.starts[start:end]), max(self.ends[start:end]))

    def compose(self, inner: AlignedText) -> AlignedText:
        """``inner`` (a text made from this one) mapped through to this one's source."""
        spans = [self.source_span(a, b) for a, b in zip(inner.starts, inner.ends, strict=True)]
        return AlignedText(
            inner.text, tuple(a for a, _ in spans), tuple(b for _, b in spans)
        )

    def map_chars(self, rewrite: Callable[[int, str], str]) -> AlignedText:
        """Each character rewritten on its own (``rewrite(index, char)``), keeping its span."""
        rewritten = [rewrite(i, char) for i, char in enumerate(self.text)]
        if all(new == char for new, char in zip(rewritten, self.text, strict=True)):
            return self  # nothing changed: the usual case, kept cheap
        return AlignedText.join(
            (new, self.starts[i], self.ends[i]) for i, new in enumerate(rewritten)
        )

    def sub(self, pattern: re.Pattern[str], replacement: Replacement) -> AlignedText:
        """``pattern.sub(replacement, text)``, with each replacement standing for its match."""
        text: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        cursor = 0
        # A template without group references is its own expansion (re parses a template
        # again at every match).
        literal = replacement if isinstance(replacement, str) and "\\" not in replacement else None
        for match in pattern.finditer(self.text):
            start, end = match.span()
            if literal is not None:
                new = literal
            elif callable(replacement):
                new = replacement(match)
            else:
                new = match.expand(replacement)
            if new == match[0]:
                continue
            if start < end:
                first, last = self.source_span(start, end)
            elif start < len(self.text):  # an empty match inserts: it stands for what follows
                first = last = self.starts[start]
            else:
                first = last = self.ends[-1] if self.text else 0
            text.append(self.text[cursor:start])
            starts.extend(self.starts[cursor:start])
            ends.extend(self.ends[cursor:start])
            text.append(new)
            starts.extend([first] * len(new))
            ends.extend([last] * len(new))
            cursor = end
        if not text:
            return self
        text.append(self.text[cursor:])
        starts.extend(self.starts[cursor:])
        ends.extend(self.ends[cursor:])
        return AlignedText("".join(text), tuple(starts), tuple(ends))

    def strip(self) -> AlignedText:
        text = self.text
        start = len(text) - len(text.lstrip())
        end = len(text.rstrip())
        if start == 0 and end == len(text):
            return self
        return AlignedText(text[start:end], self.starts[start:end], self.ends[start:end])
