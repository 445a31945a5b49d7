"""What a job needs from the speech engines, and nothing more.

The runner depends on these two small protocols, not on the STT and TTS services, so one
runner serves both the embedded backend (the server's own engines) and Celery workers
(which load the same engines, batchers included, without a gRPC server). The adapters
over the real services live in ``engine_adapters``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from speech.v1 import jobs_pb2, stt_pb2

#: Called with the fraction (0..1) of the job's audio already transcribed.
ProgressCallback = Callable[[float], None]


class TranscriptionEngine(Protocol):
    def check(self, config: stt_pb2.RecognitionConfig) -> None:
        """Raises InvalidArgument for a config no worker could serve (at submit time)."""
        ...

    async def transcribe(
        self,
        audio: bytes,
        config: stt_pb2.RecognitionConfig,
        *,
        max_seconds: float,
        on_progress: ProgressCallback,
    ) -> stt_pb2.TranscribeResponse:
        """The whole transcript of long audio, windows batched, absolute timestamps."""
        ...


@dataclass(frozen=True)
class SynthesizedText:
    item: jobs_pb2.SynthesizedItem
    encoding: int
    sample_rate_hertz: int
    engine: str
    voice: str


class SynthesisEngine(Protocol):
    def check(self, request: jobs_pb2.SubmitSynthesisJobRequest) -> None:
        """Raises InvalidArgument for an unknown voice or out-of-range audio settings."""
        ...

    async def synthesize(
        self, index: int, text: str, request: jobs_pb2.SubmitSynthesisJobRequest
    ) -> SynthesizedText:
        """One text through the response cache (so the audio lands there)."""
        ...
