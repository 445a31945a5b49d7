"""Single-flight: identical concurrent misses compute once in a process, and across replicas
one computes while the others wait for its result (or stop waiting when it dies)."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
import redis

from speech_platform.cache import build_cache, cache_key
from speech_platform.cache.singleflight import Lookup, StreamFlight
from speech_platform.config import CacheSettings
from speech_platform.errors import InvalidArgument
from tests.platform.cache.helpers import HashingCompute, metric, replica, wait_until

ROOT = Path(__file__).resolve().parents[3]


def joins(service: str, scope: str) -> float:
    return metric("speech_cache_singleflight_joins_total", service=service, scope=scope)


@pytest.mark.parametrize("backend", ["memory", "redis", "tiered"])
async def test_fifty_identical_misses_compute_once(
    backend: str, redis_url: str, redis_key_prefix: str
) -> None:
    service = f"sf-50-{backend}"
    cache = build_cache(
        CacheSettings(backend=backend, redis_url=redis_url, key_prefix=redis_key_prefix)
    )
    assert cache is not None
    compute = HashingCompute(b"Describe a conflict you resolved.", size=64_000, rounds=20_000)
    key = cache_key(service, {"text": "Describe a conflict you resolved."})
    joins_before = joins(service, "local")
    misses_before = metric("speech_cache_misses_total", service=service)

    results = await asyncio.gather(
        *(cache.get_or_compute(service, key, compute) for _ in range(50))
    )

    assert compute.calls == 1
    assert {value for value, _ in results} == {compute.expected()}
    assert [hit for _, hit in results] == [False] * 50  # nobody read it from a cache
    assert joins(service, "local") - joins_before == 49
    assert metric("speech_cache_misses_total", service=service) - misses_before == 50
    await cache.close()


async def test_second_replica_waits_for_the_first_ones_result(
    redis_url: str, redis_key_prefix: str
) -> None:
    service = "sf-replicas"
    pod_a = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20)
    pod_b = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20)
    client = redis.Redis.from_url(redis_url)
    key = cache_key(service, {"text": "Where do you see yourself in five years?"})
    engine_a = HashingCompute(b"five years")
    engine_b = HashingCompute(b"five years")
    engine_a.release = asyncio.Event()
    remote_before = joins(service, "remote")

    on_a = asyncio.ensure_future(pod_a.get_or_compute(service, key, engine_a))
    await asyncio.wait_for(engine_a.started.wait(), 10)  # A holds the lock, computing
    on_b = asyncio.ensure_future(pod_b.get_or_compute(service, key, engine_b))
    await wait_until(
        lambda: client.get(redis_key_prefix + key + ":waiters") == b"1", 10, "B to wait"
    )
    assert not on_b.done()
    engine_a.release.set()

    value_a, hit_a = await on_a
    value_b, hit_b = await asyncio.wait_for(on_b, 10)
    assert (hit_a, hit_b) == (False, True)
    assert value_b == value_a == engine_a.expected()
    assert engine_b.calls == 0
    assert joins(service, "remote") - remote_before == 1
    assert client.keys(redis_key_prefix + "*") == [(redis_key_prefix + key).encode()]
    client.close()
    await pod_a.close()
    await pod_b.close()


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from speech_platform.cache import build_cache
    from speech_platform.config import CacheSettings

    async def main():
        cache = build_cache(CacheSettings(backend="redis", redis_url=sys.argv[1],
                                          key_prefix=sys.argv[2], lock_ttl_s=60))
        async def engine():
            print("computing", flush=True)
            await asyncio.Event().wait()  # until SIGKILL
        await cache.get_or_compute("sf-holder", sys.argv[3], engine)

    asyncio.run(main())
    """
)


async def test_waiter_computes_itself_when_the_lock_holder_dies(
    redis_url: str, redis_key_prefix: str
) -> None:
    service = "sf-holder"
    key = cache_key(service, {"text": "Who dies?"})
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, redis_url, redis_key_prefix, key,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 60)
        assert line.strip() == b"computing"
        assert client.exists(redis_key_prefix + key + ":lock")
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), 10)

        survivor = replica(redis_url, redis_key_prefix, lock_wait_s=1.0)
        engine = HashingCompute(b"Who dies?")
        value, hit = await asyncio.wait_for(survivor.get_or_compute(service, key, engine), 30)
        assert (value, hit) == (engine.expected(), False)
        assert engine.calls == 1
        # it did enrol as a waiter (nobody completed, so the count is still there) ...
        assert client.get(redis_key_prefix + key + ":waiters") == b"1"
        # ... and what it computed is shared from now on, though the dead lock lingers
        assert client.get(redis_key_prefix + key) == value
        assert client.exists(redis_key_prefix + key + ":lock")
        await survivor.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await asyncio.wait_for(holder.wait(), 10)
        client.close()


@pytest.mark.parametrize("failure", ["error", "too_large"])
async def test_waiters_wake_at_once_when_the_holder_has_nothing_to_share(
    failure: str, redis_url: str, redis_key_prefix: str
) -> None:
    """The holder's failure (or an uncacheable value) wakes the waiters now, instead of
    after lock_wait_s: with a 60 s wait, finishing within 20 s proves the wake-up."""
    service = "sf-nothing"
    pod_a = replica(redis_url, redis_key_prefix, lock_wait_s=60.0, max_value_bytes=1000)
    pod_b = replica(redis_url, redis_key_prefix, lock_wait_s=60.0, max_value_bytes=1000)
    client = redis.Redis.from_url(redis_url)
    key = cache_key(service, {"text": failure})
    release = asyncio.Event()
    started = asyncio.Event()

    async def holder_engine() -> bytes:
        started.set()
        await release.wait()
        if failure == "error":
            raise InvalidArgument("unsupported voice for this replica")
        return bytes(5000)

    engine_b = HashingCompute(b"b", size=100)
    on_a = asyncio.ensure_future(pod_a.get_or_compute(service, key, holder_engine))
    await asyncio.wait_for(started.wait(), 10)
    on_b = asyncio.ensure_future(pod_b.get_or_compute(service, key, engine_b))
    await wait_until(
        lambda: client.get(redis_key_prefix + key + ":waiters") == b"1", 10, "B to wait"
    )
    release.set()
    outcome_a = await asyncio.gather(on_a, return_exceptions=True)
    assert (await asyncio.wait_for(on_b, 20)) == (engine_b.expected(), False)
    assert engine_b.calls == 1
    if failure == "error":
        assert isinstance(outcome_a[0], InvalidArgument)
    client.close()
    await pod_a.close()
    await pod_b.close()


class GatedStream:
    """A stream producer that, after its first chunk, waits to be released; it counts its
    runs, and with ``fail_first`` its first run fails instead of finishing."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.runs = 0
        self.fail_first = fail_first
        self.halfway = asyncio.Event()
        self.release = asyncio.Event()

    async def produce(self) -> AsyncGenerator[bytes, None]:
        self.runs += 1
        yield b"one"
        self.halfway.set()
        await self.release.wait()
        if self.fail_first and self.runs == 1:
            raise RuntimeError("engine failed")
        yield b"two"


@pytest.mark.parametrize("looked_up", ["before the run", "during the run"])
async def test_a_stream_run_that_ends_during_a_callers_lookup_is_replayed_not_rerun(
    looked_up: str,
) -> None:
    """The race a straggler meets: it sends its lookup (to Redis) before a run stores its
    chunks, the run ends, and the lookup comes back a miss. Its lookup being out, the ended
    run was kept, and it replays that run instead of starting a second one."""
    flights = StreamFlight()
    gated = GatedStream()

    async def consume(lookup: Lookup | None = None) -> list[tuple[bytes, bool]]:
        return [item async for item in flights.stream("k", gated.produce, lookup=lookup)]

    lookup = flights.lookup_started("k") if looked_up == "before the run" else None
    first = asyncio.ensure_future(consume())
    await gated.halfway.wait()
    lookup = lookup or flights.lookup_started("k")
    gated.release.set()
    assert await first == [(b"one", False), (b"two", False)]
    assert await consume(lookup) == [(b"one", True), (b"two", True)]  # the lookup missed
    assert gated.runs == 1
    # Its lookup done, nothing keeps the run: the next miss runs again.
    assert await consume() == [(b"one", False), (b"two", False)]
    assert gated.runs == 2


async def test_a_failed_run_is_not_kept_for_lookups() -> None:
    flights = StreamFlight()
    gated = GatedStream(fail_first=True)

    async def consume(lookup: Lookup | None = None) -> list[bytes]:
        return [chunk async for chunk, _ in flights.stream("k", gated.produce, lookup=lookup)]

    first = asyncio.ensure_future(consume())
    await gated.halfway.wait()
    lookup = flights.lookup_started("k")
    gated.release.set()
    with pytest.raises(RuntimeError):
        await first
    assert await consume(lookup) == [b"one", b"two"]
    assert gated.runs == 2


def test_lookup_done_is_idempotent_and_frees_what_it_kept() -> None:
    flights = StreamFlight()
    a, b = flights.lookup_started("k"), flights.lookup_started("k")
    flights.lookup_done(a)
    flights.lookup_done(a)  # again: no effect on b's count
    assert flights._looking == {"k": 1}
    flights.lookup_done(b)
    assert flights._looking == {} and flights._ended == {}
