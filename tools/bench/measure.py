"""Runs load against one system at several concurrency levels and summarises each level.

A "system" is anything the load generator can drive: the platform's server, a baseline
server, or a running server given with --target. Every level's summary has the same keys,
so the report and the plots treat all systems alike.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tools.bench.loadgen import LoadResult, LoadSpec, Target, run_load, served_alone
from tools.bench.procs import ForeignCpu, await_quiet
from tools.bench.prom import BatcherProbe
from tools.bench.stats import LatencySummary, corpus_wer, count_isolation
from tools.bench.workload import Request


class Measured(Protocol):
    """What the bench reads from a server while it measures (None where unknown)."""

    address: str
    metrics_port: int | None

    def cpu_seconds(self) -> float | None: ...


@dataclass
class RemoteServer:
    """A server the bench did not start (--target): no CPU time or RSS can be read."""

    address: str
    metrics_port: int | None = None

    def cpu_seconds(self) -> float | None:
        return None


@dataclass
class Progress:
    """Feeds a tqdm bar: one step per measurement, answers counted in the postfix."""

    bar: Any = None
    answers: int = 0
    #: Seconds between redraws of the answer count (the bar is also written to logs).
    interval_s: float = 2.0
    _drawn_at: float = 0.0

    def step(self, label: str) -> None:
        self.answers = 0
        if self.bar is not None:
            self.bar.set_description_str(label[:48], refresh=True)

    def answered(self, count: int) -> None:
        self.answers += count
        now = time.monotonic()
        if self.bar is not None and now - self._drawn_at >= self.interval_s:
            self._drawn_at = now
            self.bar.set_postfix_str(f"{self.answers} answers", refresh=True)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)


@dataclass
class SystemResult:
    """One system of one scenario: how it was configured and what each level measured."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    levels: list[dict[str, Any]] = field(default_factory=list)
    peak_rss_mb: float | None = None
    start_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    status: str = "ok"
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "config": self.config,
            "peak_rss_mb": self.peak_rss_mb,
            "start_seconds": self.start_seconds,
            "notes": self.notes,
            "levels": self.levels,
        }

    def level(self, concurrency: int) -> dict[str, Any] | None:
        return next((lv for lv in self.levels if lv.get("concurrency") == concurrency), None)


def summarise(
    result: LoadResult,
    *,
    output_audio: bool,
    server_cpu_s: float | None = None,
    batcher: dict[str, Any] | None = None,
    alone: dict[bytes, str | None] | None = None,
) -> dict[str, Any]:
    """The figures of one level. ``output_audio``: audio seconds are what the server made
    (TTS), otherwise what it was sent (STT). ``alone``: each request's transcript served
    alone by the same system, for the isolation count (STT)."""
    ok = result.ok
    window = result.window_s or float("nan")
    if output_audio:
        audio = sum(r.answer.audio_s for r in ok if r.answer is not None)
    else:
        audio = sum(r.request.audio_s for r in ok)
    pairs = [
        (r.request.reference, r.answer.text)
        for r in ok
        if r.request.reference is not None and r.answer is not None and r.answer.text is not None
    ]
    isolation = None
    if alone is not None:
        isolation = count_isolation(
            ((r.request.payload, r.request.label, r.answer.text) for r in ok
             if r.answer is not None),
            alone,
        ).as_dict()
    return {
        "concurrency": result.concurrency,
        "window_s": round(result.window_s, 3),
        "warmup_s": round(result.warmup_s, 3),
        "requests": len(ok),
        "issued": result.issued,
        "codes": dict(result.codes),
        "aborted": result.aborted,
        "rps": len(ok) / window if ok else 0.0,
        "audio_s_per_s": audio / window if ok else 0.0,
        "latency": LatencySummary.of([r.latency_s for r in ok]).as_dict(),
        "wer": corpus_wer(pairs) if pairs else None,
        #: Transcripts under this load that differ from the same request served alone.
        "isolation": isolation,
        "cache_hits": sum(1 for r in ok if r.answer is not None and r.answer.cache_hit),
        "server_cpu_s": server_cpu_s,
        "server_cpu_ms_per_request": (
            server_cpu_s * 1000 / len(ok) if server_cpu_s is not None and ok else None
        ),
        "batcher": batcher,
        #: The machine is shared: its load when the window ended says how quiet it was.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def measure_levels(
    server: Measured,
    target: Target,
    requests: Sequence[Request],
    levels: Sequence[int],
    *,
    window_s: float,
    max_warmup_s: float,
    output_audio: bool,
    batcher_model: str | None,
    progress: Progress,
    label: str,
    await_quiet_s: float = 0.0,
    isolation: bool = False,
) -> list[dict[str, Any]]:
    """Measures each concurrency level in turn against one running server; with
    ``await_quiet_s``, first waits (that long at most) for the machine to be quiet. With
    ``isolation``, every distinct request is first served alone (one at a time), and each
    level counts the transcripts that differ from those."""
    alone: dict[bytes, str | None] | None = None
    if isolation:
        progress.step(f"{label} alone")
        alone = asyncio.run(served_alone(target, requests))
    summaries = []
    for concurrency in levels:
        progress.step(f"{label} c={concurrency}")
        waited = await_quiet(await_quiet_s) if await_quiet_s > 0 else 0.0
        probe = BatcherProbe(server.metrics_port, batcher_model)
        cpu: dict[str, float | None] = {}
        batchers: list[dict[str, Any] | None] = []

        foreign: list[ForeignCpu | float] = []

        def on_window(edge: str, cpu: dict[str, float | None] = cpu, probe: BatcherProbe = probe,
                      batchers: list[dict[str, Any] | None] = batchers,
                      foreign: list[ForeignCpu | float] = foreign) -> None:
            # Scraping takes a few ms on the event loop, at the window's edges only.
            cpu[edge] = server.cpu_seconds()
            if edge == "start":
                probe.begin()
                foreign.append(ForeignCpu())
            else:
                batchers.append(probe.end())
                first = foreign[0]
                foreign.append(first.cores() if isinstance(first, ForeignCpu) else first)

        spec = LoadSpec(concurrency=concurrency, window_s=window_s, max_warmup_s=max_warmup_s)
        result = asyncio.run(run_load(target, requests, spec, progress.answered, on_window))
        batcher = batchers[0] if batchers else None
        start, end = cpu.get("start"), cpu.get("end")
        cpu_s = end - start if start is not None and end is not None else None
        summary = summarise(result, output_audio=output_audio, server_cpu_s=cpu_s, batcher=batcher,
                            alone=alone)
        summary["foreign_cpu_cores"] = (
            round(foreign[-1], 2) if len(foreign) > 1 and isinstance(foreign[-1], float) else None
        )
        summary["quiet_wait_s"] = waited
        summaries.append(summary)
        progress.done()
    return summaries
