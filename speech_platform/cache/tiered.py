"""The ResponseCache the servers use: memory in front of Redis, either one optional.

Lookup order for one request: the in-process LRU; then (single-flight per key in this
process) Redis, which in the same round trip either returns the value, hands us the
cross-replica lock, or enrols us as a waiter for the replica that holds it; only then the
engines. A value found in Redis is copied into memory, so a hot key costs one Redis read
per pod per TTL.

What ``hit`` means, exactly: the response bytes were read from a cache tier (memory or
Redis, including a value another replica stored while we waited for it). A request that
joined an identical computation in this process shares that computation's answer: hit if
the computation was itself a Redis hit, miss if the engines ran. So hits + misses always
equals the number of cached requests, and the joins metric says how many misses the
engines did not compute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batcher import DeadlineExpired, RequestCancelled
from speech_platform import metrics
from speech_platform.cache.chunks import CorruptChunks, decode_chunks, encode_chunks
from speech_platform.cache.claims import ClaimKind
from speech_platform.cache.memory import MemoryLRU
from speech_platform.cache.singleflight import SingleFlight, StreamFlight
from speech_platform.errors import DeadlineExceeded

if TYPE_CHECKING:
    from speech_platform.cache.redis_store import RedisStore

logger = logging.getLogger(__name__)


#: Failures that belong to the caller whose closure ran (its deadline, its cancellation),
#: not to the request: a caller that joined that flight retries with its own compute.
CALLER_SPECIFIC_ERRORS: tuple[type[BaseException], ...] = (
    DeadlineExpired,
    RequestCancelled,
    DeadlineExceeded,
)


@dataclass(frozen=True, slots=True)
class _Outcome:
    value: bytes
    hit: bool
    tier: str = ""  # "memory" / "redis" on a hit


class TieredCache:
    """Implements :class:`speech_platform.cache.ResponseCache`."""

    def __init__(
        self,
        *,
        memory: MemoryLRU | None,
        redis: RedisStore | None,
        max_value_bytes: int,
    ) -> None:
        if memory is None and redis is None:
            raise ValueError("a cache needs at least one tier (use build_cache for 'off')")
        self.memory = memory
        self.redis = redis
        self.max_value_bytes = max_value_bytes
        self._flights: SingleFlight[_Outcome] = SingleFlight()
        self._streams = StreamFlight()
        self._background: set[asyncio.Task[None]] = set()

    # -- the servicer surface

    async def get_or_compute(
        self,
        service: str,
        key: str,
        compute: Callable[[], Awaitable[bytes]],
        *,
        skip: bool = False,
    ) -> tuple[bytes, bool]:
        if skip:
            return await compute(), False
        if self.memory is not None and (value := self.memory.get(key)) is not None:
            metrics.CACHE_HITS.labels(service, "memory").inc()
            return value, True
        joining = self._flights.in_flight(key)  # exact: no await before run() decides
        try:
            outcome, joined = await self._flights.run(
                key, lambda: self._resolve(service, key, compute)
            )
        except CALLER_SPECIFIC_ERRORS:
            if not joining:
                raise
            # the deadline or cancellation was the first caller's, not ours
            outcome, joined = await self._resolve(service, key, compute), False
        if joined:
            metrics.CACHE_SINGLEFLIGHT_JOINS.labels(service, "local").inc()
        self._count(service, outcome)
        return outcome.value, outcome.hit

    async def get_or_compute_stream(
        self,
        service: str,
        key: str,
        produce: Callable[[], AsyncGenerator[bytes, None]],
        *,
        skip: bool = False,
    ) -> AsyncGenerator[tuple[bytes, bool], None]:
        """Yields (chunk, hit). A hit replays the chunks stored for the key; a miss streams
        ``produce`` live (identical concurrent streams in this process share one run) and
        stores the whole chunk list once it finished without error.

        Replicas do not wait for each other's streams: a second replica producing the same
        stream keeps its time to first audio, which waiting for the whole result would lose.
        """
        if skip:
            async with contextlib.aclosing(produce()) as chunks:
                async for chunk in chunks:
                    yield chunk, False
            return
        lookup = self._streams.lookup_started(key)
        try:
            cached = await self._lookup(key)
            if cached is not None:
                try:
                    replay = decode_chunks(cached.value)
                except CorruptChunks:
                    logger.warning(
                        "cached stream value is corrupt; recomputing", extra={"key": key}
                    )
                    replay = None
                if replay is not None:
                    self._streams.lookup_done(lookup)
                    metrics.CACHE_HITS.labels(service, cached.tier).inc()
                    for chunk in replay:
                        yield chunk, True
                    return
            metrics.CACHE_MISSES.labels(service).inc()

            async def store(chunks: list[bytes]) -> None:
                await self.put(service, key, encode_chunks(chunks))

            first = True
            live_stream = self._streams.stream(key, produce, store, lookup=lookup)
            async with contextlib.aclosing(live_stream) as live:
                async for chunk, joined in live:
                    if first and joined:
                        metrics.CACHE_SINGLEFLIGHT_JOINS.labels(service, "local").inc()
                    first = False
                    yield chunk, False
        finally:
            self._streams.lookup_done(lookup)

    async def get(self, service: str, key: str) -> bytes | None:
        """A lookup on a request's path: counted as a hit (with its tier) or a miss, so a
        servicer doing get / compute / put keeps the hit-rate metrics right."""
        found = await self._lookup(key)
        if found is None:
            metrics.CACHE_MISSES.labels(service).inc()
            return None
        metrics.CACHE_HITS.labels(service, found.tier).inc()
        return found.value

    async def put(self, service: str, key: str, value: bytes) -> None:
        if len(value) > self.max_value_bytes:
            return
        if self.memory is not None:
            self.memory.put(key, value)
        if self.redis is not None:
            await self.redis.put(key, value)

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.redis is not None:
            await self.redis.close()
        if self.memory is not None:
            self.memory.clear()

    # -- internals

    async def _lookup(self, key: str) -> _Outcome | None:
        if self.memory is not None and (value := self.memory.get(key)) is not None:
            return _Outcome(value, True, "memory")
        if self.redis is not None and (value := await self.redis.get(key)) is not None:
            if self.memory is not None:
                self.memory.put(key, value)
            return _Outcome(value, True, "redis")
        return None

    async def _resolve(
        self, service: str, key: str, compute: Callable[[], Awaitable[bytes]]
    ) -> _Outcome:
        """Runs once per key per process (single-flight): Redis, the other replicas, or
        the engines, and stores what the engines produced."""
        if self.redis is None:
            value = await compute()
            self._remember(key, value)
            return _Outcome(value, False)

        claim = await self.redis.claim(key)
        if claim.kind is ClaimKind.HIT and claim.value is not None:
            self._remember(key, claim.value)
            return _Outcome(claim.value, True, "redis")
        if claim.kind is ClaimKind.WAIT:
            shared = await self.redis.wait(key)
            if shared is not None:
                metrics.CACHE_SINGLEFLIGHT_JOINS.labels(service, "remote").inc()
                self._remember(key, shared)
                return _Outcome(shared, True, "redis")
            # the owner died, failed or could not store: compute here after all

        if claim.kind is not ClaimKind.OWNER:
            value = await compute()
            self._remember(key, value)
            await self.redis.put(key, value)
            return _Outcome(value, False)

        try:
            value = await compute()
        except asyncio.CancelledError:
            # a cancelled owner must still let go, but not make its canceller wait
            self._in_background(self.redis.complete(key, claim.token, None))
            raise
        except Exception:
            # release the lock and wake the waiters so they compute now, not after
            # lock_wait_s
            await self.redis.complete(key, claim.token, None)
            raise
        self._remember(key, value)
        await self.redis.complete(key, claim.token, value)
        return _Outcome(value, False)

    def _remember(self, key: str, value: bytes) -> None:
        if self.memory is not None and len(value) <= self.max_value_bytes:
            self.memory.put(key, value)

    @staticmethod
    def _count(service: str, outcome: _Outcome) -> None:
        if outcome.hit:
            metrics.CACHE_HITS.labels(service, outcome.tier).inc()
        else:
            metrics.CACHE_MISSES.labels(service).inc()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
