"""The server's native thread settings: BLAS on the caller's thread."""

from __future__ import annotations

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
    """Puts the process's BLAS threads back as they were."""
    threads = _blas_threads()
    yield
    for path, count in threads.items():
        threadpool_limits(limits={path: count})


def test_numpys_blas_is_capped_even_before_anything_used_it(restored: None) -> None:
    threadpool_limits(limits=2, user_api="blas")
    capped = limit_blas_threads(1)
    assert any("openblas" in path for path in capped), capped
    assert set(_blas_threads().values()) == {1}


def test_the_server_default_is_one_thread(restored: None) -> None:
    threadpool_limits(limits=2, user_api="blas")
    tune_native_threads(ServerSettings())
    assert ServerSettings().blas_threads == 1
    assert set(_blas_threads().values()) == {1}


def test_zero_leaves_the_librarys_own(restored: None) -> None:
    threadpool_limits(limits=2, user_api="blas")
    tune_native_threads(ServerSettings(blas_threads=0))
    assert set(_blas_threads().values()) == {2}
