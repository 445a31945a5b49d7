"""Turns CacheSettings into the cache the server hands to its services."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from speech_platform.cache.base import ResponseCache
from speech_platform.cache.breaker import CircuitBreaker
from speech_platform.cache.memory import MemoryLRU
from speech_platform.cache.tiered import TieredCache
from speech_platform.config import CacheSettings

if TYPE_CHECKING:
    from speech_platform.cache.redis_store import RedisStore

logger = logging.getLogger(__name__)


def build_cache(settings: CacheSettings) -> ResponseCache | None:
    """None for backend "off"; otherwise memory, Redis, or memory in front of Redis.

    A Redis backend without a URL is a configuration error, raised at start-up rather
    than discovered as a silent 0% hit rate. Nothing connects here: Redis being down at
    start-up only opens the breaker on first use, and the server starts regardless.
    """
    if settings.backend == "off":
        return None
    memory = None
    if settings.backend in ("memory", "tiered") and settings.memory_max_bytes > 0:
        memory = MemoryLRU(
            settings.memory_max_bytes,
            max_value_bytes=settings.max_value_bytes,
            ttl_s=settings.ttl_s,
        )
    redis = None
    if settings.backend in ("redis", "tiered"):
        if not settings.redis_url:
            raise ValueError(
                f"cache.backend={settings.backend!r} needs cache.redis_url "
                "(or REDIS_URL); use backend 'memory' to run without Redis"
            )
        redis = build_redis_store(settings)
    if memory is None and redis is None:
        logger.warning("cache.memory_max_bytes is 0 with backend 'memory': caching is off")
        return None
    return TieredCache(memory=memory, redis=redis, max_value_bytes=settings.max_value_bytes)


def build_redis_store(settings: CacheSettings) -> RedisStore:
    """The Redis tier alone (also used by jobs and tests that share the key layout).

    Imported here, not at the top: a server without a Redis tier never loads the client."""
    from speech_platform.cache.redis_store import RedisStore
    return RedisStore(
        settings.redis_url,
        key_prefix=settings.key_prefix,
        ttl_s=settings.ttl_s,
        max_value_bytes=settings.max_value_bytes,
        timeout_s=settings.redis_timeout_s,
        breaker=CircuitBreaker(settings.breaker_cooldown_s, name="redis"),
        lock_ttl_s=settings.lock_ttl_s,
        lock_wait_s=settings.lock_wait_s,
        connection=settings.redis,
    )
