"""Engine settings measured side by side, in-process (no gRPC), to choose the defaults.

``python -m tools.measure.stt`` and ``python -m tools.measure.tts`` share one harness
(tools/measure/harness.py): each configuration in its own subprocess, interleaved rounds,
medians, and every figure next to the library-defaults baseline.
"""
