"""The server's native thread settings: BLAS on the caller's thread, a short GIL wait."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from speech_platform.config import ServerSettings
from speech_platform.native_threads import limit_blas_threads, tune_native_threads


def _blas_threads() -> dict[str, int]:
    return {
        str(lib["filepath"]): int(lib["num_threads"])
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    }


@pytest.fixture
def restored() -> Iterator[None]:
    """Puts the process's BLAS threads and switch interval back as they were."""
    threads = _blas_threads()
    interval = sys.getswitchinterval()
    yield
    for path, count in threads.items():
        threadpool_limits(limits={path: count})
    sys.setswitchinterval(interval)


def test_numpys_blas_is_capped_even_before_anything_used_it(restored: None) -> None:
    threadpool_limits(limits=2, user_api="blas")
    capped = limit_blas_threads(1)
    assert any("openblas" in path for path in capped), capped
    assert set(_blas_threads().values()) == {1}


def test_the_server_defaults_apply_both(restored: None) -> None:
    sys.setswitchinterval(0.005)
    threadpool_limits(limits=2, user_api="blas")
    settings = ServerSettings()
    tune_native_threads(settings)
    assert settings.blas_threads == 1 and set(_blas_threads().values()) == {1}
    assert sys.getswitchinterval() == pytest.approx(settings.gil_switch_interval_ms / 1000)
    assert settings.gil_switch_interval_ms < 5.0  # shorter than CPython's own


def test_zero_leaves_each_as_it_was(restored: None) -> None:
    sys.setswitchinterval(0.005)
    threadpool_limits(limits=2, user_api="blas")
    tune_native_threads(ServerSettings(blas_threads=0, gil_switch_interval_ms=0))
    assert set(_blas_threads().values()) == {2}
    assert sys.getswitchinterval() == pytest.approx(0.005)
