"""The cache against a real Redis: identical bytes on a hit, TTL, value cap, opt-out, tiers,
streams. Each test has its own key prefix on the shared test Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
import redis

from batcher import DeadlineExpired
from speech_platform.cache import build_cache, cache_key, encode_chunks
from speech_platform.cache.tiered import TieredCache
from speech_platform.config import CacheSettings
from speech_platform.errors import InvalidArgument
from tests.platform.cache.helpers import HashingCompute, metric, replica, wait_until


@pytest.fixture
def client(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def service_name(request: pytest.FixtureRequest) -> str:
    """A metrics label of the test's own, so deltas cannot mix with other tests."""
    return "t-" + request.node.name[:40]


async def test_second_request_is_a_byte_identical_redis_hit(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix)
    compute = HashingCompute(b"Tell me about yourself.")
    key = cache_key(service, {"text": "Tell me about yourself.", "voice": "joe"})

    first, hit1 = await cache.get_or_compute(service, key, compute)
    second, hit2 = await cache.get_or_compute(service, key, compute)

    assert (hit1, hit2) == (False, True)
    assert second == first == compute.expected()
    assert compute.calls == 1
    assert metric("speech_cache_hits_total", service=service, tier="redis") == 1
    assert metric("speech_cache_misses_total", service=service) == 1
    stored_ttl_ms = client.pttl(redis_key_prefix + key)
    assert 0 < stored_ttl_ms <= 600_000
    assert client.get(redis_key_prefix + key) == first
    await cache.close()


async def test_tiered_hits_memory_first_and_fills_it_from_redis(
    redis_url: str, redis_key_prefix: str, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    pod_a = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20)
    pod_b = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20)
    compute = HashingCompute(b"Why this company?")
    key = cache_key(service, {"text": "Why this company?"})

    value, hit = await pod_a.get_or_compute(service, key, compute)
    assert not hit
    assert await pod_a.get_or_compute(service, key, compute) == (value, True)
    assert metric("speech_cache_hits_total", service=service, tier="memory") == 1
    # another pod: its memory is empty, Redis has it; then its memory has it too
    assert await pod_b.get_or_compute(service, key, compute) == (value, True)
    assert metric("speech_cache_hits_total", service=service, tier="redis") == 1
    assert pod_b.memory is not None and pod_b.memory.get(key) == value
    assert await pod_b.get_or_compute(service, key, compute) == (value, True)
    assert metric("speech_cache_hits_total", service=service, tier="memory") == 2
    assert compute.calls == 1
    await pod_a.close()
    await pod_b.close()


async def test_entries_expire_after_the_ttl(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = build_cache(
        CacheSettings(backend="redis", redis_url=redis_url, key_prefix=redis_key_prefix, ttl_s=1)
    )
    assert cache is not None
    compute = HashingCompute(b"short-lived")
    key = cache_key(service, {"text": "short-lived"})
    await cache.get_or_compute(service, key, compute)
    assert client.exists(redis_key_prefix + key)
    assert 0 < client.pttl(redis_key_prefix + key) <= 1000

    await wait_until(
        lambda: not client.exists(redis_key_prefix + key), timeout_s=10, what="key to expire"
    )
    value, hit = await cache.get_or_compute(service, key, compute)
    assert not hit and compute.calls == 2 and value == compute.expected()
    await cache.close()


async def test_values_over_the_size_cap_are_served_but_not_stored(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20, max_value_bytes=4096)
    too_big = HashingCompute(b"long answer", size=4097)
    at_cap = HashingCompute(b"exact answer", size=4096)
    big_key = cache_key(service, {"text": "long answer"})
    cap_key = cache_key(service, {"text": "exact answer"})

    for _ in range(2):
        value, hit = await cache.get_or_compute(service, big_key, too_big)
        assert not hit and value == too_big.expected()
    assert too_big.calls == 2
    assert not client.exists(redis_key_prefix + big_key)
    assert cache.memory is not None and cache.memory.get(big_key) is None

    await cache.get_or_compute(service, cap_key, at_cap)
    assert await cache.get_or_compute(service, cap_key, at_cap) == (at_cap.expected(), True)
    assert client.strlen(redis_key_prefix + cap_key) == 4096
    await cache.close()


async def test_skip_neither_reads_nor_writes(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20)
    compute = HashingCompute(b"fresh please")
    key = cache_key(service, {"text": "fresh please"})

    value, hit = await cache.get_or_compute(service, key, compute, skip=True)
    assert (value, hit) == (compute.expected(), False)
    assert not client.exists(redis_key_prefix + key)

    client.set(redis_key_prefix + key, b"stale bytes")  # present, but must not be read
    value, hit = await cache.get_or_compute(service, key, compute, skip=True)
    assert (value, hit) == (compute.expected(), False)
    assert compute.calls == 2
    assert metric("speech_cache_hits_total", service=service, tier="redis") == 0
    assert metric("speech_cache_misses_total", service=service) == 0
    await cache.close()


async def test_a_failed_computation_is_not_cached_and_releases_the_lock(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix)
    key = cache_key(service, {"text": ""})
    calls = 0

    async def reject() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise InvalidArgument("text is empty")

    outcomes = await asyncio.gather(
        *(cache.get_or_compute(service, key, reject) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, InvalidArgument) for o in outcomes)
    assert calls == 1  # identical bad requests share the one failure
    assert client.keys(redis_key_prefix + "*") == []  # no value, no lock left behind
    await cache.close()


async def test_followers_retry_when_the_first_callers_deadline_failed_it(
    redis_url: str, redis_key_prefix: str, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix)
    key = cache_key(service, {"text": "deadline"})
    good = HashingCompute(b"deadline")

    async def expired() -> bytes:
        await asyncio.sleep(0)
        raise DeadlineExpired("first caller's deadline passed")

    leader = asyncio.ensure_future(cache.get_or_compute(service, key, expired))
    follower = asyncio.ensure_future(cache.get_or_compute(service, key, good))
    with pytest.raises(DeadlineExpired):
        await leader
    assert await follower == (good.expected(), False)
    await cache.close()


async def test_cancelled_first_caller_does_not_fail_the_others(
    redis_url: str, redis_key_prefix: str, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix)
    key = cache_key(service, {"text": "cancel me"})
    compute = HashingCompute(b"cancel me")
    compute.release = asyncio.Event()

    first = asyncio.ensure_future(cache.get_or_compute(service, key, compute))
    second = asyncio.ensure_future(cache.get_or_compute(service, key, compute))
    await asyncio.wait_for(compute.started.wait(), 10)
    first.cancel()
    compute.release.set()
    assert await second == (compute.expected(), False)
    assert first.cancelled()
    assert compute.calls == 1
    await cache.close()


async def test_computation_is_cancelled_when_every_caller_left(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix)
    key = cache_key(service, {"text": "nobody waits"})
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def engine() -> bytes:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    callers = [asyncio.ensure_future(cache.get_or_compute(service, key, engine)) for _ in range(3)]
    await asyncio.wait_for(started.wait(), 10)
    for caller in callers:
        caller.cancel()
    await asyncio.wait_for(cancelled.wait(), 10)
    # the lock is released in the background so another replica need not wait it out
    await wait_until(lambda: not client.exists(redis_key_prefix + key + ":lock"), 10, "unlock")
    await cache.close()


async def _sentences(texts: list[str], counter: list[int]) -> AsyncGenerator[bytes, None]:
    counter[0] += 1
    for text in texts:
        await asyncio.sleep(0)
        yield HashingCompute(text.encode(), size=1000).expected()


async def test_stream_miss_then_byte_identical_replay(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    pod_a = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20)
    pod_b = replica(redis_url, redis_key_prefix)
    texts = ["First sentence.", "Second one.", "Third."]
    runs = [0]
    key = cache_key(service, {"text": " ".join(texts), "stream": True})

    def produce() -> AsyncGenerator[bytes, None]:
        return _sentences(texts, runs)

    live = [c async for c in pod_a.get_or_compute_stream(service, key, produce)]
    assert [hit for _, hit in live] == [False] * 3
    replayed_a = [c async for c in pod_a.get_or_compute_stream(service, key, produce)]
    replayed_b = [c async for c in pod_b.get_or_compute_stream(service, key, produce)]
    assert [c for c, _ in replayed_a] == [c for c, _ in replayed_b] == [c for c, _ in live]
    assert all(hit for _, hit in replayed_a + replayed_b)
    assert runs == [1]
    assert metric("speech_cache_hits_total", service=service, tier="memory") == 1
    assert metric("speech_cache_hits_total", service=service, tier="redis") == 1
    assert client.get(redis_key_prefix + key) == encode_chunks([c for c, _ in live])
    await pod_a.close()
    await pod_b.close()


async def test_identical_concurrent_streams_share_one_run(
    redis_url: str, redis_key_prefix: str, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix)
    texts = [f"Sentence number {i}." for i in range(6)]
    runs = [0]
    key = cache_key(service, {"text": "shared stream"})

    def shared() -> float:
        """Consumers served without running: joined the run, or (stragglers) hit its result."""
        return metric(
            "speech_cache_singleflight_joins_total", service=service, scope="local"
        ) + sum(
            metric("speech_cache_hits_total", service=service, tier=tier)
            for tier in ("memory", "redis")
        )

    before = shared()

    async def consume() -> list[bytes]:
        stream = cache.get_or_compute_stream(service, key, lambda: _sentences(texts, runs))
        return [chunk async for chunk, _ in stream]

    results = await asyncio.gather(*(consume() for _ in range(10)))
    expected = [HashingCompute(t.encode(), size=1000).expected() for t in texts]
    assert all(result == expected for result in results)
    assert runs == [1]
    # On a loaded machine the run can finish before a consumer's Redis lookup returns;
    # that straggler hits the stored result instead of joining: still one run.
    assert shared() - before == 9
    await cache.close()


async def test_corrupt_stream_value_is_recomputed(
    redis_url: str, redis_key_prefix: str, client: redis.Redis, request: pytest.FixtureRequest
) -> None:
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix)
    key = cache_key(service, {"text": "damaged"})
    client.set(redis_key_prefix + key, b"not a chunk list")
    runs = [0]
    chunks = [
        c async for c, _ in cache.get_or_compute_stream(
            service, key, lambda: _sentences(["damaged"], runs)
        )
    ]
    assert runs == [1] and chunks == [HashingCompute(b"damaged", size=1000).expected()]
    assert client.get(redis_key_prefix + key) == encode_chunks(chunks)
    await cache.close()


def test_build_cache_backends(redis_url: str) -> None:
    assert build_cache(CacheSettings(backend="off")) is None
    memory_only = build_cache(CacheSettings(backend="memory"))
    assert isinstance(memory_only, TieredCache)
    assert memory_only.memory is not None and memory_only.redis is None
    tiered = build_cache(CacheSettings(backend="tiered", redis_url=redis_url))
    assert isinstance(tiered, TieredCache)
    assert tiered.memory is not None and tiered.redis is not None
    with pytest.raises(ValueError, match="redis_url"):
        build_cache(CacheSettings(backend="redis", redis_url=""))


async def test_password_protected_redis(request: pytest.FixtureRequest) -> None:
    from tests.support.redis import spawn_redis_server

    service = service_name(request)
    with spawn_redis_server(password="s3cret pass") as server:
        # The password travels URL-encoded, as an operator would put it in REDIS_URL.
        url = f"redis://:s3cret%20pass@127.0.0.1:{server.port}/0"
        cache = build_cache(CacheSettings(backend="redis", redis_url=url, key_prefix="pw:"))
        wrong = build_cache(
            CacheSettings(
                backend="redis", redis_url=f"redis://:nope@127.0.0.1:{server.port}/0",
                key_prefix="pw:",
            )
        )
        assert cache is not None and wrong is not None
        compute = HashingCompute(b"auth")
        key = cache_key(service, {"text": "auth"})
        await cache.get_or_compute(service, key, compute)
        assert await cache.get_or_compute(service, key, compute) == (compute.expected(), True)
        # a wrong password is a cache failure, never a request failure
        errors = metric("speech_cache_errors_total", backend="redis")
        assert await wrong.get_or_compute(service, key, compute) == (compute.expected(), False)
        assert metric("speech_cache_errors_total", backend="redis") == errors + 1
        await cache.close()
        await wrong.close()


async def test_get_and_put_count_like_requests(
    redis_url: str, redis_key_prefix: str, request: pytest.FixtureRequest
) -> None:
    """Servicers may do get / compute / put themselves; the metrics still add up."""
    service = service_name(request)
    cache = replica(redis_url, redis_key_prefix, memory_bytes=1 << 20)
    key = cache_key(service, {"text": "manual"})
    assert await cache.get(service, key) is None
    await cache.put(service, key, b"encoded response")
    assert await cache.get(service, key) == b"encoded response"
    assert metric("speech_cache_misses_total", service=service) == 1
    assert metric("speech_cache_hits_total", service=service, tier="memory") == 1
    await cache.close()
