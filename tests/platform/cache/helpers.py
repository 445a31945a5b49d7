"""Shared pieces of the cache tests: a real compute function, metric deltas, bounded waits."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY

from speech_platform.cache.breaker import CircuitBreaker
from speech_platform.cache.memory import MemoryLRU
from speech_platform.cache.redis_store import RedisStore
from speech_platform.cache.tiered import TieredCache


def metric(name: str, **labels: str) -> float:
    """Current value of one Prometheus sample (0 when never touched)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class HashingCompute:
    """Stands in for an engine with real CPU work: iterated SHA-256 over the input, expanded
    to ``size`` bytes. Deterministic per input, so a cached answer can be checked byte for
    byte against a fresh one; counts how often it actually ran."""

    def __init__(self, material: bytes, *, size: int = 4096, rounds: int = 2000) -> None:
        self.material = material
        self.size = size
        self.rounds = rounds
        self.calls = 0
        self.started = asyncio.Event()
        self.release: asyncio.Event | None = None  # set one to hold the computation

    def expected(self) -> bytes:
        digest = self.material
        for _ in range(self.rounds):
            digest = hashlib.sha256(digest).digest()
        out = bytearray()
        counter = 0
        while len(out) < self.size:
            out += hashlib.sha256(digest + counter.to_bytes(8, "big")).digest()
            counter += 1
        return bytes(out[: self.size])

    async def __call__(self) -> bytes:
        self.calls += 1
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        return await asyncio.to_thread(self.expected)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0, what: str = ""
) -> None:
    """Polls a condition until true; fails after ``timeout_s`` (a bounded wait, not a sleep
    standing in for synchronisation)."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = predicate()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


def redis_store(
    url: str,
    prefix: str,
    *,
    ttl_s: float = 600,
    max_value_bytes: int = 1 << 24,
    timeout_s: float = 0.5,
    cooldown_s: float = 5.0,
    lock_ttl_s: float = 30.0,
    lock_wait_s: float = 10.0,
) -> RedisStore:
    return RedisStore(
        url,
        key_prefix=prefix,
        ttl_s=ttl_s,
        max_value_bytes=max_value_bytes,
        timeout_s=timeout_s,
        breaker=CircuitBreaker(cooldown_s),
        lock_ttl_s=lock_ttl_s,
        lock_wait_s=lock_wait_s,
    )


def replica(
    url: str,
    prefix: str,
    *,
    memory_bytes: int = 0,
    max_value_bytes: int = 1 << 24,
    **store_options: float,
) -> TieredCache:
    """One server replica's cache: Redis, plus an in-process LRU when memory_bytes > 0."""
    memory = (
        MemoryLRU(memory_bytes, max_value_bytes=max_value_bytes, ttl_s=600)
        if memory_bytes
        else None
    )
    store = redis_store(url, prefix, max_value_bytes=max_value_bytes, **store_options)
    return TieredCache(memory=memory, redis=store, max_value_bytes=max_value_bytes)
