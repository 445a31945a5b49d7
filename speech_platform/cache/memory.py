"""The in-process tier: a least-recently-used map bounded by bytes, not by entry count.

Responses range from a few KB (one short sentence) to megabytes (a long WAV), so a count
bound says nothing about memory; the byte bound is what keeps a pod inside its limit.
Entries also expire after the TTL, so the tier in front of Redis never serves longer than
Redis itself would.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from speech_platform import metrics


@dataclass(slots=True)
class _Entry:
    value: bytes
    expires_at: float
    size: int


def entry_size(key: str, value: bytes) -> int:
    """What one entry counts against the bound: its key and value bytes."""
    return len(key.encode()) + len(value)


class MemoryLRU:
    """Byte-bounded LRU with per-entry TTL. Thread-safe (jobs may use it off the loop)."""

    def __init__(
        self,
        max_bytes: int,
        *,
        max_value_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_value_bytes = max_value_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """Keys from least to most recently used (for inspection and tests)."""
        with self._lock:
            return list(self._entries)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: str, value: bytes) -> bool:
        """Stores the value unless it exceeds the value cap or the whole budget; evicts the
        least recently used entries to make room. Returns whether it was stored."""
        size = entry_size(key, value)
        if len(value) > self.max_value_bytes or size > self.max_bytes:
            return False
        with self._lock:
            if key in self._entries:
                self._remove(key)
            while self._bytes + size > self.max_bytes and self._entries:
                self._remove(next(iter(self._entries)))
            self._entries[key] = _Entry(bytes(value), self._clock() + self.ttl_s, size)
            self._add_bytes(size)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            if key in self._entries:
                self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._add_bytes(-self._bytes)

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._add_bytes(-entry.size)

    def _add_bytes(self, delta: int) -> None:
        # The gauge is shared by every instance in the process, so move it by deltas.
        self._bytes += delta
        metrics.CACHE_BYTES.inc(delta)
