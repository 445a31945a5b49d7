"""``python -m tools.bench tune --engine stt|piper|kokoro``: this machine's best configuration.

Like Triton's model_analyzer, it starts the real server once per point of a small grid
(instances x threads x max_batch_size x max_queue_delay), drives it with the same load
generator at one concurrency, and keeps the configuration with the highest throughput (audio
seconds per second: the request mix has mixed lengths); within 3% of the best (the noise of a
shared machine), the lower p95 wins, and with --p95-slo-ms
only configurations meeting it qualify. The winner is merged into a YAML file in the
settings format (speech_platform.config), so ``speech-server --config FILE`` (or
SPEECH_CONFIG_FILE=FILE) serves with it; other engines' sections already in the file stay.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools.bench import procs, workload
from tools.bench.loadgen import SYNTHESIZE, TRANSCRIBE
from tools.bench.measure import Progress, measure_levels
from tools.bench.report import machine
from tools.bench.scenarios import deep_merge

log = logging.getLogger(__name__)

DEFAULT_TUNED_PATH = Path(__file__).resolve().parents[2] / ".venv" / "share" / "speech-tuned.yaml"
#: Throughputs within this fraction of the best count as a tie (then p95 decides).
TIE_FRACTION = 0.03
MAX_POINTS = 12


@dataclass(frozen=True)
class Point:
    """One grid point: the settings section it writes, and how to start a server for it."""

    section: dict[str, Any]
    label: str


def _layouts(cores: int) -> list[tuple[int, int]]:
    """(instances, threads): one instance per core, one instance on every core, and between."""
    layouts = [(cores, 1), (1, cores)]
    if cores >= 4:
        layouts.append((cores // 2, 2))
    return list(dict.fromkeys(layouts))


def grid(engine: str, cores: int) -> list[Point]:
    points: list[Point] = []
    for instances, threads in _layouts(cores):
        if engine == "stt":
            for size in (1, 4, 8):
                for delay in ((0.0,) if size == 1 else (0.0, 10.0)):
                    points.append(Point(
                        {"stt": {"instances": instances, "cpu_threads": threads,
                                 "batcher": {"max_batch_size": size,
                                             "max_queue_delay_ms": delay}}},
                        f"{instances}x{threads} batch {size} delay {delay:g} ms",
                    ))
        elif engine == "piper":
            for size in (1, 4):
                for delay in ((0.0,) if size == 1 else (0.0, 5.0)):
                    points.append(Point(
                        {"tts": {"piper_instances": instances, "piper_threads": threads,
                                 "piper_batcher": {"max_batch_size": size,
                                                   "max_queue_delay_ms": delay}}},
                        f"{instances}x{threads} batch {size} delay {delay:g} ms",
                    ))
        elif engine == "kokoro":
            # The int8 graph takes batch 1 only: Kokoro scales by instances alone.
            points.append(Point(
                {"tts": {"kokoro_instances": instances, "kokoro_threads": threads,
                         "kokoro_batcher": {"max_batch_size": 1, "max_queue_delay_ms": 0.0}}},
                f"{instances}x{threads}",
            ))
        else:
            raise ValueError(f"unknown engine {engine!r}")
    if engine == "kokoro" and cores > 1:
        points.append(Point(
            {"tts": {"kokoro_instances": 1, "kokoro_threads": 1,
                     "kokoro_batcher": {"max_batch_size": 1, "max_queue_delay_ms": 0.0}}},
            "1x1",
        ))
    return points[:MAX_POINTS]


def _server_overrides(engine: str) -> tuple[dict[str, Any], list[str], str]:
    if engine == "stt":
        return {"cache": {"backend": "off"}}, ["stt"], TRANSCRIBE
    return {"tts": {"engines": [engine]}, "cache": {"backend": "off"}}, ["tts"], SYNTHESIZE


def choose(results: Sequence[dict[str, Any]], p95_slo_ms: float | None) -> dict[str, Any] | None:
    """Highest throughput; ties (within TIE_FRACTION) go to the lower p95."""
    usable = [r for r in results if _throughput(r)]
    if p95_slo_ms is not None:
        meeting = [r for r in usable if (r["latency"]["p95_ms"] or 1e18) <= p95_slo_ms]
        if meeting:
            usable = meeting
        else:
            log.warning("no configuration met p95 <= %.0f ms; choosing on throughput", p95_slo_ms)
    if not usable:
        return None
    best = max(_throughput(r) for r in usable)
    close = [r for r in usable if _throughput(r) >= best * (1 - TIE_FRACTION)]
    return min(close, key=lambda r: r["latency"]["p95_ms"] or float("inf"))


def _throughput(result: dict[str, Any]) -> float:
    """Audio seconds per second (work done, whatever the length mix), else requests/s."""
    return float(result.get("audio_s_per_s") or result.get("rps") or 0.0)


def validate(config: dict[str, Any]) -> None:
    """Fails unless every section parses as the server's settings would parse it."""
    from speech_platform.config import Settings

    Settings.model_validate(config)


def write_tuned(path: Path, section: dict[str, Any], note: str) -> dict[str, Any]:
    existing: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: not a YAML mapping; refusing to overwrite it")
        existing = loaded
    merged = deep_merge(existing, section)
    validate(merged)
    header = (
        "# Tuned by `python -m tools.bench tune` for this machine. Use it with\n"
        f"#   speech-server --config {path}\n"
        f"# or SPEECH_CONFIG_FILE={path}. Environment variables (SPEECH_*) still win.\n"
        f"# {note}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(header + yaml.safe_dump(merged, sort_keys=False))
    partial.replace(path)
    return merged


def tune(
    engine: str,
    *,
    out: Path,
    concurrency: int,
    window_s: float,
    max_warmup_s: float,
    p95_slo_ms: float | None,
    base_config: dict[str, Any],
    log_dir: Path,
    progress_bar: Any = None,
    max_points: int | None = None,
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    points = grid(engine, cores)[: max_points or MAX_POINTS]
    overrides, services, method = _server_overrides(engine)
    requests = workload.stt_requests() if engine == "stt" else workload.tts_requests(engine)
    progress = Progress(progress_bar)
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, point in enumerate(points):
        config = deep_merge(deep_merge(base_config, overrides), point.section)
        server = procs.speech_server(f"tune-{engine}-{index}", config, log_dir, services=services)
        entry: dict[str, Any] = {"label": point.label, "section": point.section}
        try:
            server.start(300)
            (level,) = measure_levels(
                server, _target(server, method), requests, [concurrency], window_s=window_s,
                max_warmup_s=max_warmup_s, output_audio=engine != "stt", batcher_model=None,
                progress=progress, label=f"tune {engine} {point.label}",
            )
            entry.update(level)
        except Exception as error:
            log.exception("tune point %s failed", point.label)
            entry["error"] = f"{type(error).__name__}: {error}"
            progress.done()
        finally:
            entry["peak_rss_mb"] = server.record_peak_rss()
            server.stop()
        results.append(entry)
    best = choose(results, p95_slo_ms)
    report: dict[str, Any] = {
        "engine": engine,
        "machine": machine(),
        "concurrency": concurrency,
        "window_s": window_s,
        "p95_slo_ms": p95_slo_ms,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "points": results,
        "best": best["label"] if best else None,
        "path": str(out),
    }
    if best is not None:
        note = (f"{engine}: {best['label']} -> {best['rps']:.3g} req/s, p95 "
                f"{best['latency']['p95_ms']:.0f} ms at {concurrency} clients "
                f"({report['machine']['cpu_model']}, {cores} cores)")
        write_tuned(out, best["section"], note)
        report["written"] = best["section"]
    sidecar = out.with_name(f"{out.stem}.{engine}.json")
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps(report, indent=2, default=str))
    report["sweep_file"] = str(sidecar)
    return report


def _target(server: procs.ServerProcess, method: str) -> Any:
    from tools.bench.loadgen import Target

    return Target(server.address, method)
