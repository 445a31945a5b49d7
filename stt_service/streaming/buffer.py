"""The recent audio of one stream, addressed by absolute sample index.

Only the current utterance (and a short pre-roll before it) is ever needed, so the
front is trimmed as utterances end; at most about 30 s stay in memory. Appends are
cheap (a list of pieces); pieces are joined only when a decode takes a slice, about
once per interim interval rather than once per chunk.
"""

from __future__ import annotations

import numpy as np


class AudioBuffer:
    def __init__(self) -> None:
        self._pieces: list[np.ndarray] = []
        #: Absolute index of the first sample held.
        self.start = 0
        #: Absolute index one past the last sample held (= samples received so far).
        self.end = 0

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._pieces.append(samples)
            self.end += len(samples)

    def slice(self, start: int, end: int) -> np.ndarray:
        """A copy of samples [start, end) (clamped to what is held)."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, np.float32)
        whole = self._joined()
        return whole[start - self.start : end - self.start].copy()

    def trim(self, before: int) -> None:
        """Forgets samples before absolute index ``before``."""
        before = min(max(before, self.start), self.end)
        if before == self.start:
            return
        whole = self._joined()
        rest = whole[before - self.start :]
        self._pieces = [rest] if len(rest) else []
        self.start = before

    def _joined(self) -> np.ndarray:
        if len(self._pieces) != 1:
            joined = np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.float32)
            self._pieces = [joined] if len(joined) else []
            return joined
        return self._pieces[0]
