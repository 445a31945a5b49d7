"""The shared tier: values in Redis with a TTL, and a cross-replica single-flight lock.

Every call is bounded by ``timeout_s`` and guarded by a :class:`CircuitBreaker`; a failed,
slow or refused call is counted, reported to the breaker and answered as "unavailable", so
the caller computes the response itself. Nothing here raises into a request.

Cross-replica single-flight (the lock steps are Lua scripts, so each is atomic):

* ``claim``: GET the value; if absent, (re-check it and) take ``<key>:lock`` with SET NX
  PX and a random token; if another replica holds it, register as a waiter (INCR
  ``<key>:waiters``).
* the owner computes, then ``complete``: SET the value, then delete the lock only if it
  still holds our token (compare-and-delete) and RPUSH one wake-up token per registered
  waiter onto ``<key>:done``.
* a waiter BLPOPs ``<key>:done`` (no polling) for at most ``lock_wait_s``, then GETs the
  value; if the owner died or failed, it times out and computes itself.

Registering and waking are atomic against each other, and the value is stored before the
wake-up, so a waiter either is counted before the owner wakes the waiters (and gets a
token) or sees the stored value when it registers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from speech_platform import metrics
from speech_platform.cache.breaker import CircuitBreaker
from speech_platform.cache.claims import Claim, ClaimKind
from speech_platform.config import RedisConnectionSettings
from speech_platform.redis_connection import async_redis, close_async_redis, redis_target

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CLAIM_LUA = """
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return {3}
"""

_COMPLETE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local waiters = tonumber(redis.call('GET', KEYS[2]) or '0')
if waiters > 0 then
  redis.call('DEL', KEYS[2])
  for _ = 1, waiters do redis.call('RPUSH', KEYS[3], '1') end
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return waiters
"""

#: How long unclaimed wake-up tokens live: a registered waiter reaches its BLPOP within one
#: round trip of registering, so a second is generous; stale tokens only cost an early GET.
_DONE_TOKENS_TTL_MS: Final = 1000


_UNAVAILABLE = Claim(ClaimKind.UNAVAILABLE)


class _Skipped:
    """Marks a call that did not happen (breaker open) or failed (counted, logged once)."""


SKIPPED: Final = _Skipped()


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        ttl_s: float,
        max_value_bytes: int,
        timeout_s: float,
        breaker: CircuitBreaker,
        lock_ttl_s: float,
        lock_wait_s: float,
        connection: RedisConnectionSettings | None = None,
    ) -> None:
        """``url`` is any shape speech_platform/redis_connection.py reads (one server or
        Sentinels, TLS or not); ``connection`` adds the password and certificates."""
        target = redis_target(url, connection)
        self.key_prefix = key_prefix
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.max_value_bytes = max_value_bytes
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.lock_ttl_ms = max(1, int(lock_ttl_s * 1000))
        self.lock_wait_s = lock_wait_s
        # One immediate retry, on connection errors only: after a Redis restart the pool
        # still holds sockets to the dead process, and each would otherwise count as a new
        # outage. Timeouts are never retried: the breaker decides when to try again.
        common: dict[str, Any] = {
            "socket_connect_timeout": timeout_s,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "decode_responses": False,
        }
        # Under Sentinel, a failover shows here as failed calls (the breaker opens: requests
        # go on with the in-process tier), until a connection made after the cooldown asks
        # the Sentinels again and finds the new master.
        self._client = async_redis(
            target, sentinel_timeout_s=timeout_s, socket_timeout=timeout_s, **common
        )
        # BLPOP may legitimately block for lock_wait_s, longer than any socket timeout.
        self._blocking = async_redis(
            target, sentinel_timeout_s=timeout_s, socket_timeout=None, **common
        )
        self._claim_script = self._client.register_script(_CLAIM_LUA)
        self._complete_script = self._client.register_script(_COMPLETE_LUA)

    def value_key(self, key: str) -> str:
        return self.key_prefix + key

    def _keys(self, key: str) -> list[str]:
        base = self.value_key(key)
        return [base, base + ":lock", base + ":waiters", base + ":done"]

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None on a miss or when Redis is unusable."""
        result = await self._guarded(lambda: self._client.get(self.value_key(key)))
        return result if isinstance(result, bytes) else None

    async def put(self, key: str, value: bytes) -> bool:
        """Stores the value with the TTL; False when too large or Redis is unusable."""
        if len(value) > self.max_value_bytes:
            return False
        result = await self._guarded(
            lambda: self._client.set(self.value_key(key), value, px=self.ttl_ms)
        )
        return result is True

    async def claim(self, key: str) -> Claim:
        """The value, or the lock, or a place among the waiters.

        A plain GET comes first because hits are the common case and a large value read
        through Lua costs about three times a GET; the script re-checks the value, so a
        value stored between the two calls is still found.
        """
        value = await self._guarded(lambda: self._client.get(self.value_key(key)))
        if isinstance(value, _Skipped):
            return _UNAVAILABLE
        if isinstance(value, bytes):
            return Claim(ClaimKind.HIT, value=value)
        token = secrets.token_hex(16)
        result = await self._guarded(
            lambda: self._claim_script(keys=self._keys(key), args=[token, self.lock_ttl_ms])
        )
        if isinstance(result, _Skipped):
            return _UNAVAILABLE
        code = int(result[0])
        if code == 1:
            return Claim(ClaimKind.HIT, value=bytes(result[1]))
        if code == 2:
            return Claim(ClaimKind.OWNER, token=token)
        return Claim(ClaimKind.WAIT)

    async def complete(self, key: str, token: str, value: bytes | None) -> None:
        """Stores the value (None or too large: nothing), then releases our lock and wakes
        the registered waiters, who read the value or compute themselves. The value goes
        in a plain SET, not through the script: Lua would copy it and block Redis longer."""
        if value is not None:
            await self.put(key, value)
        _, lock, waiters, done = self._keys(key)
        await self._guarded(
            lambda: self._complete_script(
                keys=[lock, waiters, done], args=[token, _DONE_TOKENS_TTL_MS]
            )
        )

    async def wait(self, key: str) -> bytes | None:
        """Waits (BLPOP, no polling) up to lock_wait_s for the owner to complete, then reads
        the value; None when it did not come (owner died, failed, or value not storable)."""
        done_key = self._keys(key)[3]
        wait_s = self.lock_wait_s
        if wait_s > 0:
            woke = await self._guarded(
                lambda: self._blocking.blpop([done_key], timeout=wait_s),
                timeout_s=wait_s + self.timeout_s,
            )
            if isinstance(woke, _Skipped):
                return None
        return await self.get(key)

    async def ping(self) -> bool:
        return (await self._guarded(self._client.ping)) is True

    async def close(self) -> None:
        for client in (self._client, self._blocking):
            try:
                await close_async_redis(client)
            except (RedisError, OSError) as exc:  # closing a dead connection may complain
                logger.debug("closing redis client: %s", exc)

    async def _guarded(
        self, call: Callable[[], Awaitable[T]], *, timeout_s: float | None = None
    ) -> T | _Skipped:
        """Runs one Redis call within the time bound, through the breaker."""
        if not self.breaker.allow():
            return SKIPPED
        try:
            async with asyncio.timeout(timeout_s if timeout_s is not None else self.timeout_s):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.CACHE_ERRORS.labels("redis").inc()
            self.breaker.record_failure(exc)
            return SKIPPED
        self.breaker.record_success()
        return result
