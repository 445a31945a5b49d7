"""Admission of interim decodes into a model's batcher, so that they never delay finals.

On a CPU a decode costs the same whether it runs alone or in a batch (the encoder is
compute bound), so every interim that computes holds an instance a final might need, for
a whole decode. Finals are what a speaker waits for; interims are a courtesy. So each
model admits a new interim only while the decodes the gate knows of, interims and stream
finals in flight together, stay below its ``capacity``: each final in flight takes a
place from interims. By default (``stt.stream_decode_capacity`` = 0) the capacity is one
fewer than the model's instances, at least one, so that an instance is free when a final
comes: side by side on this 2-core machine (tiny.en, 2 instances, 4 and 8 live streams)
that cut the median final latency by a quarter to a half against a capacity of 2, with as
many interims per stream. Where batching is nearly free (a GPU), a larger capacity lets
the interims of many streams share batches.

Streams that want an interim meanwhile wait here in order of arrival, and a stream still
waiting when its next interim falls due keeps its place (its decode, once admitted, takes
the newest audio: nothing stale is ever queued). Finals are counted, never held.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from batcher import Batcher


class InterimGate:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("an interim gate needs a capacity of at least one decode")
        self.capacity = capacity
        #: Interims admitted and not yet done.
        self.busy = 0
        #: Stream finals submitted and not yet done.
        self.finals = 0
        self._waiting: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _free(self) -> bool:
        return self.busy + self.finals < self.capacity

    def request(self, key: Hashable, start: Callable[[], None]) -> None:
        """Runs ``start`` now if there is room, else when there is (once per key)."""
        if key in self._waiting:
            return
        if not self._waiting and self._free():
            self.busy += 1
            start()
        else:
            self._waiting[key] = start

    def withdraw(self, key: Hashable) -> None:
        """A waiting stream no longer wants its interim (utterance over, stream closed)."""
        self._waiting.pop(key, None)

    def release(self) -> None:
        """An admitted interim is done (or withdrawn)."""
        self.busy = max(self.busy - 1, 0)
        self._admit()

    def final_started(self) -> None:
        self.finals += 1

    def final_finished(self) -> None:
        self.finals = max(self.finals - 1, 0)
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self._free():
            _, start = self._waiting.popitem(last=False)
            self.busy += 1
            start()


_gates: weakref.WeakKeyDictionary[Batcher[Any, Any], InterimGate] = weakref.WeakKeyDictionary()


def gate_for(batcher: Batcher[Any, Any], capacity: int) -> InterimGate:
    """The gate of one model's batcher, shared by every stream on it."""
    gate = _gates.get(batcher)
    if gate is None:
        gate = _gates[batcher] = InterimGate(capacity)
    return gate
