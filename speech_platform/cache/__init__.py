"""The response cache in front of the batchers (implementation: see the modules here).

Servicers use exactly this surface:

    key = cache_key("tts", {"engine": "piper", "voice": ..., "text": ..., ...})
    value, hit = await cache.get_or_compute("tts", key, compute, skip=request.skip_cache)

``compute`` is an async callable returning the encoded response bytes; identical concurrent
misses run it once (single-flight). A cache failure never fails the request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol


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

    async def get(self, service: str, key: str) -> bytes | None: ...

    async def put(self, service: str, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...
