"""The interim gate: interims use only the decode capacity that stream finals leave, and
streams that must wait are let in in order of arrival."""

from __future__ import annotations

import functools

import pytest

from stt_service.streaming.gate import InterimGate


def test_streams_beyond_the_capacity_wait_in_arrival_order() -> None:
    gate = InterimGate(capacity=2)
    started: list[str] = []
    for name in "abcd":
        gate.request(name, functools.partial(started.append, name))
    assert started == ["a", "b"] and gate.busy == 2 and gate.waiting == 2
    gate.release()
    assert started == ["a", "b", "c"] and gate.busy == 2
    gate.release()
    gate.release()
    assert started == ["a", "b", "c", "d"] and gate.busy == 1 and gate.waiting == 0


def test_finals_in_flight_take_their_places_from_interims() -> None:
    gate = InterimGate(capacity=2)
    started: list[str] = []
    gate.final_started()
    gate.request("a", functools.partial(started.append, "a"))
    gate.final_started()
    gate.request("b", functools.partial(started.append, "b"))
    assert started == ["a"] and gate.waiting == 1
    gate.release()  # a is done, but two finals fill the capacity: b still waits
    assert started == ["a"]
    gate.final_finished()
    assert started == ["a", "b"]
    gate.final_finished()
    assert gate.busy == 1 and gate.finals == 0


def test_a_waiting_stream_asking_again_keeps_its_place_and_is_started_once() -> None:
    gate = InterimGate(capacity=1)
    started: list[str] = []
    gate.request("a", functools.partial(started.append, "a"))
    gate.request("b", functools.partial(started.append, "b"))
    gate.request("c", functools.partial(started.append, "c"))
    gate.request("b", functools.partial(started.append, "b again"))
    gate.release()
    gate.release()
    assert started == ["a", "b", "c"]


def test_a_withdrawn_stream_is_never_started() -> None:
    gate = InterimGate(capacity=1)
    started: list[str] = []
    gate.request("a", functools.partial(started.append, "a"))
    gate.request("b", functools.partial(started.append, "b"))
    gate.withdraw("b")
    gate.release()
    assert started == ["a"] and gate.busy == 0


def test_a_gate_needs_some_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        InterimGate(capacity=0)
