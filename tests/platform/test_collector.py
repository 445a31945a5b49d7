"""The garbage collector set for serving: start-up's heap frozen, a larger young generation."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from speech_platform.collector import freeze_startup_heap, tune_collector
from speech_platform.config import ServerSettings


@pytest.fixture
def restored() -> Iterator[None]:
    """Puts the collector's thresholds back and thaws what a test froze."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_freezing_takes_the_heap_out_of_collections(restored: None) -> None:
    kept = [[index] for index in range(1000)]  # container objects the collector tracks
    frozen = freeze_startup_heap()
    assert frozen >= len(kept)
    assert gc.get_freeze_count() == frozen
    tracked = {id(obj) for obj in gc.get_objects()}
    assert id(kept[0]) not in tracked  # no generation walks it any more


def test_the_server_defaults_freeze_and_raise_the_young_threshold(restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    settings = ServerSettings()
    tune_collector(settings)
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (settings.gc_young_threshold, 10, 10)
    assert settings.gc_young_threshold > 700  # above CPython's own


def test_off_leaves_the_collector_as_it_was(restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_collector(ServerSettings(gc_freeze_after_start=False, gc_young_threshold=0))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)
