"""Kokoro's device switch: CPU by default; CUDA only where onnxruntime-gpu is installed."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from tts_service.kokoro_engine import onnx_providers


def test_cpu_uses_the_cpu_provider() -> None:
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_cuda_needs_the_cuda_provider() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert onnx_providers("cuda")[0] == "CUDAExecutionProvider"
    else:  # this build of onnxruntime (CPU): a clear start-up error, not a silent CPU run
        with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
            onnx_providers("cuda")
