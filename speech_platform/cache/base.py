"""The cache's contract: the key every service builds, and the ResponseCache protocol."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
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

    def get_or_compute_stream(
        self,
        service: str,
        key: str,
        produce: Callable[[], AsyncGenerator[bytes, None]],
        *,
        skip: bool = False,
    ) -> AsyncGenerator[tuple[bytes, bool], None]:
        """Yields (chunk, hit): a hit replays the cached chunks, a miss streams live."""
        ...

    async def get(self, service: str, key: str) -> bytes | None:
        """The cached value or None; counted in the hit/miss metrics like a request."""
        ...

    async def put(self, service: str, key: str, value: bytes) -> None: ...

    async def close(self) -> None: ...
