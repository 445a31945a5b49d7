"""The response cache in front of the batchers (implementation: see the modules here).

Servicers use exactly this surface:

    key = cache_key("tts", {"engine": "piper", "voice": ..., "text": ..., ...})
    value, hit = await cache.get_or_compute("tts", key, compute, skip=request.skip_cache)

``compute`` is an async callable returning the encoded response bytes; identical concurrent
misses run it once (single-flight). A cache failure never fails the request.

Streaming responses (e.g. StreamingSynthesize, one message per sentence):

    async for chunk, hit in cache.get_or_compute_stream("tts", key, produce, skip=...):
        yield Response.FromString(chunk)  # or however the chunk was encoded

``produce`` is a zero-argument callable returning an async iterator of encoded messages. A
hit replays the stored chunks; a miss streams ``produce`` live and stores the chunk list
(``encode_chunks``) when it ends without error. Wrap the iteration in
``contextlib.aclosing`` when you may stop early.

``hit`` is true exactly when the bytes came from a cache tier (see tiered.py for what a
request that joined an identical in-flight computation reports).

Modules: memory (byte-bounded LRU), redis_store (+ breaker), singleflight, chunks, tiered
(the composition), factory (``build_cache(CacheSettings)``), warm_cli (speech-cache-warm).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from speech_platform.cache.chunks import CorruptChunks, decode_chunks, encode_chunks

if TYPE_CHECKING:
    from speech_platform.cache.factory import build_cache

__all__ = [
    "CorruptChunks",
    "ResponseCache",
    "build_cache",
    "cache_key",
    "decode_chunks",
    "encode_chunks",
]


def cache_key(service: str, parts: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of everything that changes the output.

    >>> cache_key("tts", {"b": 1, "a": "x"}) == cache_key("tts", {"a": "x", "b": 1})
    True
    """
    canonical = json.dumps(
        {"service": service, **parts}, sort_keys=True, separators=(",", ":"), default=_bytes_digest
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _bytes_digest(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    raise TypeError(f"cannot put {type(value).__name__} in a cache key")


class ResponseCache(Protocol):
    async def get_or_compute(
        self,
        service: str,
        key: str,
        compute: Callable[[], Awaitable[bytes]],
        *,
        skip: bool = False,
    ) -> tuple[bytes, bool]:
        """(value, hit). With skip=True neither reads nor writes the cache."""
        ...

    def get_or_compute_stream(
        self,
        service: str,
        key: str,
        produce: Callable[[], AsyncIterator[bytes]],
        *,
        skip: bool = False,
    ) -> AsyncIterator[tuple[bytes, bool]]:
        """Yields (chunk, hit): a hit replays the cached chunks, a miss streams live."""
        ...

    async def get(self, service: str, key: str) -> bytes | None:
        """The cached value or None; counted in the hit/miss metrics like a request."""
        ...

    async def put(self, service: str, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...


def __getattr__(name: str) -> Any:
    # build_cache is imported lazily: factory imports this module (for ResponseCache).
    if name == "build_cache":
        from speech_platform.cache.factory import build_cache

        return build_cache
    raise AttributeError(name)
