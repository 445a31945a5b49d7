"""Engines the batcher tests hold and release from the test (real threads, no sleeps)."""

from __future__ import annotations

import threading


class Gated:
    """Computes nothing until ``gate`` is set; then every item, in the order it came."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.computed: list[int] = []

    def factory(self, instance: int):
        def run_batch(items: list[int]) -> list[int]:
            self.gate.wait(timeout=30)
            self.computed.extend(items)
            return items

        return run_batch


class Metered:
    """Computes one item per permit released (instance threads wait for permits)."""

    def __init__(self) -> None:
        self.permits = threading.Semaphore(0)

    def factory(self, instance: int):
        def run_batch(items: list[int]) -> list[int]:
            for _ in items:
                self.permits.acquire(timeout=30)
            return items

        return run_batch


class PerInstance:
    """Each instance computes only once its own gate is set, and records the batches it
    ran."""

    def __init__(self, instances: int) -> None:
        self.gates = [threading.Event() for _ in range(instances)]
        self.ran: dict[int, list[list[str]]] = {i: [] for i in range(instances)}

    def factory(self, instance: int):
        def run_batch(items: list[str]) -> list[str]:
            self.gates[instance].wait(timeout=30)
            self.ran[instance].append(list(items))
            return items

        return run_batch
