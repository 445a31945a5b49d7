"""The ceiling baseline: each engine called in-process from threads, no gRPC and no batcher,
at a few thread/instance layouts; the best layout is the ceiling the server is held to.

STT is measured two ways: the library's own ``WhisperModel.transcribe`` (beam 5, English:
the platform's decode settings) and the platform's batched ``WhisperEngine`` fed whole
batches directly. The ceiling is the better of all of them, so the server cannot look good
against a weak reference.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tools.bench import engines
from tools.bench.inprocess import EngineCall, ThreadedResult, run_threads
from tools.bench.procs import ForeignCpu, await_quiet
from tools.bench.stats import LatencySummary, corpus_wer
from tools.bench.workload import Clip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """``instances`` threads, each with an engine of ``threads`` intra-op threads."""

    engine: str
    instances: int
    threads: int
    per_call: int = 1

    @property
    def label(self) -> str:
        batch = f", batch {self.per_call}" if self.per_call > 1 else ""
        return f"{self.engine} {self.instances}x{self.threads}{batch}"


def layouts_for(engine: str, cores: int, stt_batch: int) -> list[Layout]:
    """One engine per core, or one engine using every core (the two ends on a small CPU);
    the platform's Whisper engine as the server configures it (batch size, encoder sizing)."""
    if engine == "stt":
        return [
            Layout("faster-whisper", cores, 1),
            Layout("faster-whisper", 1, cores),
            Layout("platform-engine", cores, 1, per_call=stt_batch),
        ]
    return [Layout(engine, cores, 1), Layout(engine, 1, cores)]


def _stt_calls(layout: Layout) -> list[EngineCall[Any]]:
    if layout.engine == "faster-whisper":
        model = engines.load_whisper(layout.threads, workers=layout.instances)

        def transcribe(clips: Sequence[Clip]) -> list[tuple[str | None, float]]:
            return [engines.transcribe_tuned(model, clip.wav_bytes()) for clip in clips]

        return [transcribe] * layout.instances
    from stt_service.options import DecodeOptions
    from stt_service.whisper_engine import EngineConfig, WhisperEngine, WindowItem

    options = DecodeOptions(language=engines.STT_LANGUAGE, beam_size=engines.STT_BEAM_SIZE)
    calls: list[EngineCall[Any]] = []
    for _ in range(layout.instances):
        engine = WhisperEngine(EngineConfig(engines.whisper_path(), cpu_threads=layout.threads))

        def run(clips: Sequence[Clip], engine: WhisperEngine = engine) -> list[
            tuple[str | None, float]
        ]:
            items = [
                WindowItem(clip.pcm.astype(np.float32) / 32768.0, options) for clip in clips
            ]
            outcomes = engine.run_batch(items)
            results: list[tuple[str | None, float]] = []
            for clip, outcome in zip(clips, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    raise outcome
                text = " ".join(s.text.strip() for s in outcome.segments)
                results.append((text, clip.duration_s))
            return results

        calls.append(run)
    return calls


def _tts_calls(layout: Layout) -> list[EngineCall[Any]]:
    calls: list[EngineCall[Any]] = []
    for _ in range(layout.instances):
        if layout.engine == "piper":
            voice = engines.load_piper(layout.threads)

            def speak(texts: Sequence[str], voice: Any = voice) -> list[tuple[str | None, float]]:
                return [(None, engines.piper_synthesize(voice, t)[1]) for t in texts]
        else:
            kokoro = engines.load_kokoro(layout.threads)

            def speak(texts: Sequence[str], voice: Any = kokoro) -> list[tuple[str | None, float]]:
                return [(None, engines.kokoro_synthesize(voice, t)[1]) for t in texts]

        calls.append(speak)
    return calls


def measure_layout(
    layout: Layout, items: Sequence[Any], *, window_s: float, max_warmup_s: float,
    await_quiet_s: float = 0.0,
) -> dict[str, Any]:
    """Loads the layout's engines, measures (first calls are warm-up), frees them."""
    calls = _stt_calls(layout) if layout.engine in ("faster-whisper", "platform-engine") else (
        _tts_calls(layout)
    )
    waited = await_quiet(await_quiet_s) if await_quiet_s > 0 else 0.0
    foreign = ForeignCpu()
    result: ThreadedResult[Any] = run_threads(
        calls, items, per_call=layout.per_call, window_s=window_s, max_warmup_s=max_warmup_s
    )
    others = foreign.cores()
    del calls
    gc.collect()
    summary = _summary(layout, result)
    summary["foreign_cpu_cores"] = round(others, 2)  # over warm-up and window together
    summary["quiet_wait_s"] = waited
    return summary


def _summary(layout: Layout, result: ThreadedResult[Any]) -> dict[str, Any]:
    window = result.window_s
    done = result.done
    pairs = [
        (d.item.reference, d.text) for d in done if isinstance(d.item, Clip) and d.text is not None
    ]
    return {
        "layout": layout.label,
        "engine": layout.engine,
        "instances": layout.instances,
        "threads": layout.threads,
        "per_call": layout.per_call,
        "concurrency": layout.instances * layout.per_call,
        "window_s": round(window, 3),
        "warmup_s": round(result.warmup_s, 3),
        "requests": len(done),
        "rps": len(done) / window if done else 0.0,
        "audio_s_per_s": sum(d.audio_s for d in done) / window if done else 0.0,
        "latency": LatencySummary.of([d.latency_s for d in done]).as_dict(),
        "wer": corpus_wer(pairs) if pairs else None,
        "errors": result.errors[:5],
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
