"""Redis failing under load: killed, hung (SIGSTOP), or absent at start. Requests never
fail because of the cache, the breaker stops the hammering, the outage is logged once, and
caching resumes by itself once Redis is back."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import pytest

from speech_platform.cache import cache_key
from speech_platform.cache.breaker import BreakerState
from speech_platform.cache.tiered import TieredCache
from tests.platform.cache.helpers import HashingCompute, metric, replica, wait_until
from tests.support.redis import RedisServerProcess, free_port, spawn_redis_server

REDIS_TIMEOUT_S = 0.2
COOLDOWN_S = 0.5


@dataclass
class Load:
    """Workers asking for a small set of texts over and over, checking every answer."""

    cache: TieredCache
    service: str
    texts: int = 12
    workers: int = 8
    served: int = 0
    hits: int = 0
    failures: list[BaseException] = field(default_factory=list)
    wrong: int = 0

    def __post_init__(self) -> None:
        texts = [f"question {i}" for i in range(self.texts)]
        self.engines = [HashingCompute(text.encode(), rounds=200) for text in texts]
        self.keys = [cache_key(self.service, {"text": text}) for text in texts]
        #: Requests are tagged with the phase in which they started.
        self.phase = "warm"
        self.hits_by_phase: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._worker(w)) for w in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _worker(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            n = i % self.texts
            phase = self.phase
            try:
                value, hit = await self.cache.get_or_compute(
                    self.service, self.keys[n], self.engines[n]
                )
            except Exception as exc:
                self.failures.append(exc)
            else:
                self.served += 1
                self.hits += hit
                self.hits_by_phase[phase] = self.hits_by_phase.get(phase, 0) + hit
                self.wrong += value != self.engines[n].expected()
            i += 1
            await asyncio.sleep(0)  # let the other workers and the breaker clock move

    async def served_more(self, count: int, timeout_s: float = 60.0) -> None:
        target = self.served + count
        await wait_until(lambda: self.served >= target, timeout_s, f"{count} more requests")

    async def hits_more(self, count: int, timeout_s: float = 60.0) -> None:
        target = self.hits + count
        await wait_until(lambda: self.hits >= target, timeout_s, f"{count} more hits")


def outage_logs(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    records = [r for r in caplog.records if r.name == "speech_platform.cache.breaker"]
    started = sum("failed" in r.getMessage() for r in records)
    ended = sum("reachable again" in r.getMessage() for r in records)
    return started, ended


async def test_redis_killed_mid_load(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="speech_platform.cache.breaker")
    with spawn_redis_server() as server:
        cache = replica(
            server.url, "outage-kill:", timeout_s=REDIS_TIMEOUT_S, cooldown_s=COOLDOWN_S
        )
        assert cache.redis is not None
        breaker = cache.redis.breaker
        load = Load(cache, "outage-kill")
        load.start()
        try:
            await load.hits_more(50)  # warm: Redis serves hits

            errors_before = metric("speech_cache_errors_total", backend="redis")
            server.kill()
            outage_started = time.monotonic()
            await wait_until(lambda: breaker.is_open, 30, "the breaker to open")
            assert metric("speech_cache_breaker_open") == 1
            load.phase = "outage"
            await load.served_more(200)  # served by the engines, Redis gone
            outage_s = time.monotonic() - outage_started
            assert load.hits_by_phase.get("outage", 0) == 0  # nothing hits a dead Redis
            errors = metric("speech_cache_errors_total", backend="redis") - errors_before
            # in-flight calls at the kill, then at most one probe per cooldown
            assert 1 <= errors <= load.workers + outage_s / COOLDOWN_S + 2

            server.restart()  # same port, empty
            load.phase = "restarted"
            await load.hits_more(50)
            assert load.hits_by_phase["restarted"] > 0
            assert breaker.state is BreakerState.CLOSED
            assert metric("speech_cache_breaker_open") == 0
        finally:
            await load.stop()
            await cache.close()
    assert load.failures == []
    assert load.wrong == 0
    assert outage_logs(caplog) == (1, 1)


async def test_hung_redis_never_holds_requests_past_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGSTOP keeps the socket open but silent, the worst case for a client without
    timeouts: every request must still come back, in about one Redis timeout."""
    caplog.set_level(logging.WARNING, logger="speech_platform.cache.breaker")
    budget_s = 2 * REDIS_TIMEOUT_S + 5.0  # two Redis calls at worst, plus the engine
    with spawn_redis_server() as server:
        cache = replica(
            server.url, "outage-hang:", timeout_s=REDIS_TIMEOUT_S, cooldown_s=COOLDOWN_S
        )
        assert cache.redis is not None
        service = "outage-hang"
        stored = HashingCompute(b"stored before the hang")
        stored_key = cache_key(service, {"text": "stored"})
        await cache.get_or_compute(service, stored_key, stored)
        assert (await cache.get_or_compute(service, stored_key, stored))[1]

        server.pause()
        try:
            fresh = [HashingCompute(f"during the hang {i}".encode()) for i in range(10)]
            keys = [cache_key(service, {"text": f"hang {i}"}) for i in range(10)]
            concurrent = await asyncio.gather(
                *(
                    asyncio.wait_for(cache.get_or_compute(service, k, e), budget_s)
                    for k, e in zip(keys, fresh, strict=True)
                )
            )
            assert [v for v, _ in concurrent] == [e.expected() for e in fresh]
            assert cache.redis.breaker.is_open
            # a cached text is recomputed while Redis hangs: served, not a hit
            for _ in range(3):
                value, hit = await asyncio.wait_for(
                    cache.get_or_compute(service, stored_key, stored), budget_s
                )
                assert (value, hit) == (stored.expected(), False)
            await asyncio.wait_for(cache.get_or_compute(service, stored_key, stored), budget_s)
        finally:
            server.resume()

        async def hit_again() -> bool:
            value, hit = await cache.get_or_compute(service, stored_key, stored)
            assert value == stored.expected()
            return hit

        await wait_until(hit_again, 30, "a hit after SIGCONT")
        assert cache.redis.breaker.state is BreakerState.CLOSED
        await cache.close()
    assert outage_logs(caplog) == (1, 1)


async def test_redis_absent_at_start_then_appears() -> None:
    port = free_port()
    cache = replica(
        f"redis://127.0.0.1:{port}/0", "late:", timeout_s=REDIS_TIMEOUT_S, cooldown_s=COOLDOWN_S
    )
    assert cache.redis is not None
    service = "late-redis"
    engine = HashingCompute(b"early bird")
    key = cache_key(service, {"text": "early bird"})
    for _ in range(3):
        assert await cache.get_or_compute(service, key, engine) == (engine.expected(), False)
    assert cache.redis.breaker.is_open

    late = RedisServerProcess(port=port)
    try:
        late.start()

        async def cached_again() -> bool:
            await cache.get_or_compute(service, key, engine)
            return late.client().exists("late:" + key) == 1

        await wait_until(cached_again, 30, "the late Redis to be used")
        assert (await cache.get_or_compute(service, key, engine))[1]
    finally:
        late.close()
        await cache.close()
