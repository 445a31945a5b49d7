"""The response cache in front of the batchers (implementation: see the modules here).

Services go through one door, ``CacheDoor`` (door.py), the same way for STT and TTS: a
key (``cache_key`` over everything that changes the output), a compute function that
returns the service's domain result, and a ``Codec`` that turns that result into the bytes
stored and back:

    door = CacheDoor(cache, "tts", RESULT_CODEC)  # cache may be None: then no caching
    result, hit = await door.get_or_compute(key, compute, skip=request.skip_cache)

Identical concurrent misses run ``compute`` once (single-flight). A cache failure never
fails the request. Below the door, the ResponseCache surface works on bytes:

    value, hit = await cache.get_or_compute("tts", key, compute_bytes, skip=...)

Streaming responses (e.g. StreamingSynthesize, one message per sentence; ``door.stream``
does this with the codec):

    async for chunk, hit in cache.get_or_compute_stream("tts", key, produce, skip=...):
        yield Response.FromString(chunk)  # or however the chunk was encoded

``produce`` is a zero-argument callable returning an async iterator of encoded messages. A
hit replays the stored chunks; a miss streams ``produce`` live and stores the chunk list
(``encode_chunks``) when it ends without error. Wrap the iteration in
``contextlib.aclosing`` when you may stop early.

``hit`` is true exactly when the bytes came from a cache tier (see tiered.py for what a
request that joined an identical in-flight computation reports).

Modules: base (``cache_key``, ``ResponseCache``), door (``CacheDoor``), memory (byte-bounded
LRU), redis_store (+ breaker), singleflight, chunks, tiered (the composition), factory
(``build_cache(CacheSettings)``). The ``speech-cache-warm`` command is
speech_server.cache_warm_cli.
"""

from __future__ import annotations

from speech_platform.cache.base import ResponseCache, cache_key
from speech_platform.cache.chunks import CorruptChunks, decode_chunks, encode_chunks
from speech_platform.cache.door import CacheDoor, Codec
from speech_platform.cache.factory import build_cache

__all__ = [
    "CacheDoor",
    "Codec",
    "CorruptChunks",
    "ResponseCache",
    "build_cache",
    "cache_key",
    "decode_chunks",
    "encode_chunks",
]
