"""Silero VAD run incrementally: each chunk is scored once, never the whole stream again.

faster-whisper's Silero v6 model scores 512-sample frames (32 ms at 16 kHz). Each frame is
fed with the last 64 samples of the frame before it (its context) and the LSTM state
(h, c) that the previous frame left. Keeping that context and state per stream makes the
scores of a stream fed chunk by chunk exactly those of one pass over all of it (a test
checks this), at a cost proportional to the new audio only.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
_STATE_SHAPE = (1, 1, 128)


class StreamingVad:
    """Speech probability of every 32 ms frame of one stream, as its audio arrives.

    ``score`` holds back samples that do not fill a whole frame until the next call.
    Not thread-safe per stream (one stream feeds it in order); the ONNX session behind it
    is shared by every stream and safe to run from several threads.
    """

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model  # loads onnxruntime: only when needed

        self._session = get_vad_model().session
        self._h = np.zeros(_STATE_SHAPE, np.float32)
        self._c = np.zeros(_STATE_SHAPE, np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)
        self._pending = np.zeros(0, np.float32)
        #: Frames scored so far; frame i covers samples [i * 512, (i + 1) * 512).
        self.frames = 0

    def score(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the frames that ``samples`` completes (possibly none)."""
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        count = len(data) // FRAME_SAMPLES
        self._pending = np.array(data[count * FRAME_SAMPLES :], np.float32)
        if count == 0:
            return np.zeros(0, np.float32)
        frames = np.asarray(data[: count * FRAME_SAMPLES], np.float32).reshape(count, -1)
        contexts = np.concatenate([self._context[None, :], frames[:-1, -CONTEXT_SAMPLES:]])
        batch = np.ascontiguousarray(np.concatenate([contexts, frames], axis=1))
        probabilities, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = frames[-1, -CONTEXT_SAMPLES:].copy()
        self.frames += count
        return np.asarray(probabilities, np.float32).reshape(-1)
