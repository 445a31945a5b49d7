"""The one door between a service and its response cache, the same for every service.

Triton's response cache is the model: one lookup in front of every model, keyed by the
request. A service hands the door a key it owns (``cache_key`` over everything that
changes the output), a function that computes its domain result, and a ``Codec`` for that
result; the door does the rest the same way for all: single-flight for identical
concurrent misses, ``skip`` (the request's ``skip_cache``: neither read nor write), the hit
flag, and serving without a cache when there is none.

    door = CacheDoor(cache, "stt", TRANSCRIPT_CODEC)
    transcript, hit = await door.get_or_compute(key, compute, skip=config.skip_cache)

Streams (one value per chunk, e.g. a sentence of StreamingSynthesize) are stored as their
list of chunks once complete; a hit replays them, a miss streams live:

    async for chunk, hit in door.stream(key, produce, skip=request.skip_cache): ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from speech_platform.cache.base import ResponseCache

R = TypeVar("R")
C = TypeVar("C")


@dataclass(frozen=True)
class Codec(Generic[R]):
    """How a service's result becomes the bytes the cache stores, and back."""

    encode: Callable[[R], bytes]
    decode: Callable[[bytes], R]


class CacheDoor(Generic[R]):
    """A service's lookup in front of its models (``cache`` None: every call computes)."""

    def __init__(self, cache: ResponseCache | None, service: str, codec: Codec[R]) -> None:
        self.cache = cache
        self.service = service
        self.codec = codec

    @property
    def enabled(self) -> bool:
        return self.cache is not None

    def needs_key(self, skip: bool) -> bool:
        """Whether a request's key will be used: not without a cache, nor when it skips the
        cache (neither read nor written), so a caller need not hash its input (~0.15 ms per
        100 KB on the event loop, for each of a burst's calls)."""
        return self.cache is not None and not skip

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[R]], *, skip: bool = False
    ) -> tuple[R, bool]:
        """(result, hit). A result computed by this very call is returned as it is; one
        from the cache (or from an identical call in flight) is decoded."""
        if self.cache is None:
            return await compute(), False
        computed: list[R] = []

        async def compute_bytes() -> bytes:
            result = await compute()
            computed.append(result)
            return self.codec.encode(result)

        value, hit = await self.cache.get_or_compute(
            self.service, key, compute_bytes, skip=skip
        )
        return (computed[0] if computed else self.codec.decode(value)), hit

    async def stream(
        self,
        key: str,
        produce: Callable[[], AsyncGenerator[C, None]],
        codec: Codec[C],
        *,
        skip: bool = False,
    ) -> AsyncGenerator[tuple[C, bool], None]:
        """(chunk, hit) in order: replayed from the cache, or produced live (identical
        concurrent streams share one production) and stored once complete."""
        if self.cache is None:
            async with contextlib.aclosing(produce()) as live:
                async for chunk in live:
                    yield chunk, False
            return

        async def produce_bytes() -> AsyncGenerator[bytes, None]:
            async with contextlib.aclosing(produce()) as live:
                async for chunk in live:
                    yield codec.encode(chunk)

        stream = self.cache.get_or_compute_stream(self.service, key, produce_bytes, skip=skip)
        async with contextlib.aclosing(stream) as chunks:
            async for data, hit in chunks:
                yield codec.decode(data), hit
