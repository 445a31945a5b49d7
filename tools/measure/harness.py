"""The measurement harness that tools.measure.stt and tools.measure.tts share.

Each configuration runs in its own subprocess (``python -m MODULE --run NAME``, which prints
one JSON line), so peak RSS and the engines' thread pools never mix; rounds interleave the
configurations (this machine is shared and noisy) and results are compared by their medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s() -> float:
    """CPU seconds this process used so far, all threads: robust to a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timing_summary(
    name: str,
    single: list[tuple[float, float]],
    audio_s: float,
    wall: float,
    latencies: list[float],
    sizes: dict[int, int],
) -> Result:
    """The figures every configuration reports: ``single`` is (seconds, audio seconds) of
    requests served alone; ``audio_s`` and ``wall`` are the concurrent load's."""
    return {
        "config": name,
        "single_latency_s": statistics.mean(t for t, _ in single),
        "throughput_audio_s_per_s": audio_s / wall,
        "concurrent_wall_s": wall,
        "concurrent_p50_s": statistics.median(latencies),
        "concurrent_max_s": max(latencies),
        "batch_sizes": sizes,
        "peak_rss_mb": peak_rss_mb(),
    }


def spawn(module: str, name: str, clients: int) -> Result:
    """One configuration measured in a fresh interpreter."""
    command = [sys.executable, "-m", module, "--run", name, "--clients", str(clients)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: Result = json.loads(output.strip().splitlines()[-1])
    return result


def run_rounds(
    module: str,
    names: Iterable[str],
    rounds: int,
    clients: int,
    measure: Callable[[str, str, int], Result] = spawn,
) -> dict[str, list[Result]]:
    """Every configuration once per round, in the same order each round."""
    chosen = list(names)
    runs: dict[str, list[Result]] = {}
    for _round in range(rounds):
        for name in chosen:
            runs.setdefault(name, []).append(measure(module, name, clients))
            print(json.dumps(runs[name][-1]), file=sys.stderr)
    return runs


def median(results: list[Result], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """--rounds, --clients, --json and the hidden --run that a child process receives."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    return parser


def child(run: Callable[[str, int], Result], name: str, clients: int) -> None:
    """The child side of ``spawn``: measure one configuration, print it as the last line."""
    print(json.dumps(run(name, clients)))


#: A table column: its title, a format spec with the width first ("7.2f") and the figure of
#: one configuration's results.
Column = tuple[str, str, Callable[[list[Result]], float]]


def by_median(key: str, scale: Callable[[float], float] = lambda v: v) -> Callable[
    [list[Result]], float
]:
    """A column figure: the median of ``key`` over the rounds, optionally rescaled."""
    return lambda results: scale(median(results, key))


def ratio_to(base: float) -> Callable[[float], float]:
    """A column scale: the figure as a multiple of ``base``."""
    return lambda value: value / base


def peak_rss(results: list[Result]) -> float:
    return float(max(r["peak_rss_mb"] for r in results))


def print_table(
    rows: Iterable[tuple[str, list[Result]]], columns: Sequence[Column], name_width: int
) -> None:
    """One line per configuration, the figures right-aligned under their titles."""
    widths = [int(spec.split(".")[0]) for _, spec, _ in columns]
    print(f"{'config':{name_width}} " + " ".join(
        f"{title:>{width}}" for (title, _, _), width in zip(columns, widths, strict=True)
    ))
    for name, results in rows:
        print(f"{name:{name_width}} " + " ".join(
            format(figure(results), spec) for _, spec, figure in columns
        ))


def write_json(path: Path | None, runs: dict[str, list[Result]]) -> None:
    if path is not None:
        path.write_text(json.dumps(runs, indent=2))
