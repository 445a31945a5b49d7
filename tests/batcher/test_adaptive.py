"""AdaptiveDelay (batcher/adaptive.py): what it learns and when it decides to wait."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batcher import AdaptiveDelay

costs = st.floats(min_value=0.0, max_value=0.1, allow_nan=False)
sizes = st.lists(st.integers(min_value=1, max_value=64), min_size=2, max_size=40).filter(
    lambda ns: len(set(ns)) > 1
)


def learnt(fixed: float, per_item: float, batch_sizes: list[int], **kwargs: float) -> AdaptiveDelay:
    adaptive = AdaptiveDelay(**{"target_latency_s": 1.0, "max_delay_s": 0.05, **kwargs})
    for n in batch_sizes:
        adaptive.observe_batch(n, fixed + per_item * n)
    return adaptive


def arrivals(adaptive: AdaptiveDelay, gap_s: float, count: int = 200) -> None:
    for k in range(count):
        adaptive.observe_arrival(k * gap_s)


# ------------------------------------------------------------------ learning the cost line


@settings(max_examples=200, deadline=None)
@given(fixed=costs, per_item=costs, batch_sizes=sizes)
def test_it_recovers_fixed_and_per_item_cost_from_exact_timings(fixed, per_item, batch_sizes):
    model = learnt(fixed, per_item, batch_sizes).cost_model()
    assert model is not None
    assert model[0] == pytest.approx(fixed, abs=1e-6)
    assert model[1] == pytest.approx(per_item, abs=1e-6)


@given(size=st.integers(min_value=1, max_value=64), seconds=costs, repeats=st.integers(1, 20))
def test_nothing_is_learnt_until_batches_of_two_sizes_were_seen(size, seconds, repeats):
    adaptive = AdaptiveDelay(target_latency_s=1.0, max_delay_s=0.01)
    assert adaptive.cost_model() is None
    for _ in range(repeats):
        adaptive.observe_batch(size, seconds)
    assert adaptive.cost_model() is None
    adaptive.observe_batch(size + 1, seconds)
    assert adaptive.cost_model() is not None


@settings(max_examples=200, deadline=None)
@given(
    timings=st.lists(
        st.tuples(st.integers(1, 64), st.floats(0.0, 1.0, allow_nan=False)), min_size=2
    )
)
def test_the_learnt_costs_are_never_negative(timings):
    adaptive = AdaptiveDelay(target_latency_s=1.0, max_delay_s=0.01)
    for n, seconds in timings:
        adaptive.observe_batch(n, seconds)
    model = adaptive.cost_model()
    if model is not None:
        assert model[0] >= 0.0 and model[1] >= 0.0


def test_a_batch_that_gets_cheaper_per_item_clamps_the_slope_at_zero():
    adaptive = learnt(0.05, 0.0, [])
    adaptive.observe_batch(1, 0.05)
    adaptive.observe_batch(8, 0.01)  # bigger batch, faster: no negative per-item cost
    fixed, per_item = adaptive.cost_model() or (None, None)
    assert per_item == 0.0 and fixed is not None and fixed >= 0.0


def test_old_timings_fade_so_a_change_in_cost_is_followed():
    adaptive = learnt(0.001, 0.010, [1, 2, 4, 8] * 10)  # compute bound: per item dominates
    for _ in range(100):
        for n in (1, 2, 4, 8):
            adaptive.observe_batch(n, 0.030 + 0.001 * n)  # now a large fixed cost
    fixed, per_item = adaptive.cost_model() or (0.0, 0.0)
    assert fixed == pytest.approx(0.030, abs=1e-3)
    assert per_item == pytest.approx(0.001, abs=1e-3)


# ------------------------------------------------------------------ the wait decision


def test_before_anything_is_learnt_it_waits_like_the_fixed_delay():
    adaptive = AdaptiveDelay(target_latency_s=0.1, max_delay_s=0.02)
    assert adaptive.wait_s(oldest_wait_s=0.0, pending=1, max_batch_size=8) == 0.02
    assert adaptive.wait_s(oldest_wait_s=0.015, pending=1, max_batch_size=8) == pytest.approx(
        0.005
    )
    assert adaptive.wait_s(oldest_wait_s=0.5, pending=1, max_batch_size=8) == 0.0


def test_a_full_batch_leaves_at_once():
    adaptive = learnt(0.010, 0.001, [1, 2, 4, 8])
    arrivals(adaptive, 0.002)
    assert adaptive.wait_s(oldest_wait_s=0.0, pending=8, max_batch_size=8) == 0.0


def test_it_waits_one_expected_gap_when_the_next_request_saves_more_than_it_costs():
    adaptive = learnt(0.010, 0.001, [1, 2, 4, 8], target_latency_s=0.1, max_delay_s=0.02)
    arrivals(adaptive, 0.002)  # next request in 2 ms; sharing saves a 10 ms fixed cost
    assert adaptive.wait_s(oldest_wait_s=0.0, pending=1, max_batch_size=8) == pytest.approx(
        0.002
    )


def test_it_does_not_wait_when_requests_come_slower_than_the_fixed_cost():
    adaptive = learnt(0.001, 0.010, [1, 2, 4, 8], target_latency_s=1.0, max_delay_s=0.5)
    arrivals(adaptive, 0.005)  # a 5 ms gap to save 1 ms: compute bound, batching gains little
    assert adaptive.wait_s(oldest_wait_s=0.0, pending=1, max_batch_size=8) == 0.0


def test_it_does_not_wait_past_the_latency_target():
    adaptive = learnt(0.010, 0.001, [1, 2, 4, 8], target_latency_s=0.05, max_delay_s=0.02)
    arrivals(adaptive, 0.002)
    assert adaptive.wait_s(oldest_wait_s=0.0, pending=1, max_batch_size=8) > 0
    # 40 ms already waited + 2 ms gap + 10 ms fixed + 2 ms for two items > 50 ms target
    assert adaptive.wait_s(oldest_wait_s=0.040, pending=1, max_batch_size=8) == 0.0


@settings(max_examples=300, deadline=None)
@given(
    fixed=costs,
    per_item=costs,
    batch_sizes=sizes,
    gap=st.floats(0.0, 0.05, allow_nan=False),
    target=st.floats(0.001, 0.5, allow_nan=False),
    max_delay=st.floats(0.0, 0.05, allow_nan=False),
    oldest=st.floats(0.0, 0.2, allow_nan=False),
    pending=st.integers(1, 16),
    max_batch_size=st.integers(1, 16),
)
def test_the_wait_is_capped_and_only_taken_when_it_pays_within_the_target(
    fixed, per_item, batch_sizes, gap, target, max_delay, oldest, pending, max_batch_size
):
    adaptive = learnt(fixed, per_item, batch_sizes, target_latency_s=target, max_delay_s=max_delay)
    arrivals(adaptive, gap, count=20)
    wait = adaptive.wait_s(oldest_wait_s=oldest, pending=pending, max_batch_size=max_batch_size)
    assert 0.0 <= wait <= max(max_delay - oldest, 0.0) + 1e-12  # max_queue_delay is a hard cap
    if pending >= max_batch_size:
        assert wait == 0.0
    if wait > 0:
        model = adaptive.cost_model()
        assert model is not None
        learnt_fixed, learnt_per_item = model
        assert gap < learnt_fixed + 1e-9  # the next request comes before the cost it saves
        projected = oldest + gap + learnt_fixed + learnt_per_item * (pending + 1)
        assert projected <= target + 1e-6
