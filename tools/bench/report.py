"""The results document (JSON), the targets it is judged by, its plots and a Markdown table.

The JSON is self-describing: machine, versions, options, every level of every system, and
each target with its measured value and whether it was met. Plots are drawn from the JSON
alone, so they can be redrawn later (``python -m tools.bench report FILE``).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import shutil
from pathlib import Path
from typing import Any

SCHEMA = "speech-bench/1"
_VERSIONED = (
    "speech-platform", "grpcio", "protobuf", "faster-whisper", "ctranslate2", "piper-tts",
    "onnxruntime", "kokoro-onnx", "ray", "numpy",
)


# ------------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "gpu": "none (CPU only; no GPU machine was lent for this run)"
        if shutil.which("nvidia-smi") is None else "nvidia-smi present (not used)",
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


# ------------------------------------------------------------------------------- targets


def _systems(doc: dict[str, Any], scenario: str) -> dict[str, Any]:
    entry = doc.get("scenarios", {}).get(scenario) or {}
    return dict(entry.get("systems") or {})


def _levels(doc: dict[str, Any], scenario: str, system: str) -> list[dict[str, Any]]:
    found = _systems(doc, scenario).get(system) or {}
    return [lv for lv in found.get("levels") or [] if lv.get("requests")]


def _at(levels: list[dict[str, Any]], concurrency: int) -> dict[str, Any] | None:
    return next((lv for lv in levels if lv.get("concurrency") == concurrency), None)


def _common_level(a: list[dict[str, Any]], b: list[dict[str, Any]], want: int) -> int | None:
    shared = {lv["concurrency"] for lv in a} & {lv["concurrency"] for lv in b}
    if want in shared:
        return want
    return max(shared) if shared else None


def _p95(level: dict[str, Any] | None) -> float | None:
    return None if level is None else (level.get("latency") or {}).get("p95_ms")


def _target(
    ident: str, description: str, value: float | None, op: str, threshold: float | None,
    detail: str = "", extra_ok: bool = True,
) -> dict[str, Any]:
    met: bool | None
    if value is None or threshold is None or (isinstance(value, float) and math.isnan(value)):
        met = None
    elif op == ">=":
        met = value >= threshold and extra_ok
    else:
        met = value <= threshold and extra_ok
    return {"id": ident, "description": description, "value": value, "op": op,
            "threshold": threshold, "met": met, "detail": detail}


def _ratio_target(
    doc: dict[str, Any], ident: str, scenario: str, baseline: str, threshold: float | None,
    *, want: int = 16, p95_too: bool = False, description: str,
) -> dict[str, Any]:
    server = _levels(doc, scenario, "server")
    other = _levels(doc, scenario, baseline)
    if not server or not other:
        why = _systems(doc, scenario).get(baseline, {}).get("reason") or "not measured"
        return _target(ident, description, None, ">=", threshold, f"not measured: {why}")
    if baseline in ("ceiling", "ray"):
        reference = other[0]
        level = _at(server, want) or max(server, key=lambda lv: lv["concurrency"])
        layout = reference.get("layout")
        label = _ray_label(layout) if isinstance(layout, dict) else layout
        where = f"server c={level['concurrency']} vs {baseline} best ({label})"
    else:
        concurrency = _common_level(server, other, want)
        if concurrency is None:
            return _target(ident, description, None, ">=", threshold, "no common level")
        found, matched = _at(server, concurrency), _at(other, concurrency)
        assert found is not None and matched is not None
        level, reference = found, matched
        where = f"c={concurrency}"
    # Clip and text lengths are mixed (2.8-29 s of audio), so a window that happened to hold
    # more long requests has fewer of them: the ratio is of audio seconds per second, the
    # work done; requests per second are shown next to it.
    ratio = (
        level["audio_s_per_s"] / reference["audio_s_per_s"]
        if reference.get("audio_s_per_s") else None
    )
    detail = (
        f"{where}: {level['audio_s_per_s']:.3g} vs {reference['audio_s_per_s']:.3g} audio s/s "
        f"({level['rps']:.3g} vs {reference['rps']:.3g} req/s, ratio "
        f"{level['rps'] / reference['rps'] if reference['rps'] else float('nan'):.2f})"
    )
    p95_ok = True
    if p95_too:
        mine, theirs = _p95(level), _p95(reference)
        p95_ok = mine is not None and theirs is not None and mine <= theirs
        detail += f"; p95 {mine:.0f} ms vs {theirs:.0f} ms" if mine and theirs else "; p95 n/a"
    return _target(ident, description, ratio, ">=", threshold, detail, p95_ok)


#: The STT workloads (see tools/bench/workload.py) and, for the ratios against the plain
#: server, issue 13's thresholds (None: reported, no threshold).
STT_SCENARIOS = ("stt", "stt-short", "stt-same", "stt-repeat", "stt-long")
_PLAIN_THRESHOLDS: dict[str, float | None] = {
    "stt": 1.5, "stt-short": 3.0, "stt-same": None, "stt-repeat": None, "stt-long": None,
}
_STT_SYSTEMS = ("server", "plain", "naive", "ceiling", "ray", "server-fixed-delay",
                "server-adaptive")
#: Isolation is judged where WER is allowed to differ from the plain server by this much.
WER_MARGIN = 0.005


def _sid(scenario: str) -> str:
    return scenario.replace("-", "_")


def _top(levels: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(levels, key=lambda lv: lv["concurrency"]) if levels else None


def isolation_of(system: dict[str, Any]) -> dict[str, Any] | None:
    """A system's isolation count over its levels under concurrent load (clients > 1):
    transcripts that differ from the same request served alone to it."""
    counts = [
        lv["isolation"] for lv in system.get("levels") or []
        if lv.get("isolation") and (lv.get("concurrency") or 0) > 1
    ]
    if not counts:
        return None
    examples = [e for c in counts for e in c.get("examples") or []]
    return {
        "differ": sum(c["differ"] for c in counts),
        "compared": sum(c["compared"] for c in counts),
        "unmatched": sum(c.get("unmatched", 0) for c in counts),
        "examples": examples[:3],
    }


def correctness(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per STT scenario and system: WER at its highest level and the isolation count."""
    found: dict[str, dict[str, Any]] = {}
    for scenario in STT_SCENARIOS:
        systems = _systems(doc, scenario)
        entry: dict[str, Any] = {}
        for name in _STT_SYSTEMS:
            if name not in systems:
                continue
            top = _top(_levels(doc, scenario, name))
            if top is None:
                continue
            entry[name] = {"wer": top.get("wer"), "wer_at_clients": top.get("concurrency"),
                           "isolation": isolation_of(systems[name])}
        if entry:
            found[scenario] = entry
    return found


def correctness_lines(doc: dict[str, Any], scenario: str) -> tuple[str, str]:
    """Two short lines for a plot caption: WER per system, isolation per system."""
    entry = correctness(doc).get(scenario) or {}
    wer = ", ".join(f"{n} {e['wer']:.3f}" for n, e in entry.items() if e["wer"] is not None)
    iso = ", ".join(
        f"{n} {e['isolation']['differ']}/{e['isolation']['compared']}"
        for n, e in entry.items() if e["isolation"]
    )
    return (f"WER: {wer or 'n/a'}", f"differ from alone under load: {iso or 'n/a'}")


def _isolation_target(doc: dict[str, Any], scenario: str) -> dict[str, Any]:
    entry = correctness(doc).get(scenario) or {}
    parts = [f"{n} {e['isolation']['differ']}/{e['isolation']['compared']}"
             for n, e in entry.items() if e["isolation"]]
    server = (entry.get("server") or {}).get("isolation")
    examples = "; ".join(
        f"{e['request']}: alone {e['alone']!r}, under load {e['under_load']!r}"
        for e in (server or {}).get("examples") or []
    )
    detail = ", ".join(parts) or "not measured"
    if examples:
        detail += f" (server: {examples})"
    return _target(
        f"{_sid(scenario)}_isolation",
        f"{scenario}: transcripts under concurrent load that differ from the same request "
        "served alone (server; normalised case and punctuation)",
        server["differ"] if server else None, "<=", 0.0, _reason(detail),
    )


def _stt_wer_target(doc: dict[str, Any], scenario: str) -> dict[str, Any]:
    entry = correctness(doc).get(scenario) or {}
    parts = [f"{n} {e['wer']:.3f}" for n, e in entry.items() if e["wer"] is not None]
    server = (entry.get("server") or {}).get("wer")
    plain = (entry.get("plain") or {}).get("wer")
    threshold = plain + WER_MARGIN if plain is not None else None
    ident = "stt_wer" if scenario == "stt" else f"{_sid(scenario)}_wer"
    return _target(ident, f"{scenario}: word error rate vs the reference transcripts (server; "
                   f"wanted: at most the plain server's + {WER_MARGIN})",
                   server, "<=", threshold, ", ".join(parts))


def _stt_targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """For every STT workload: the server against the plain server and naive, its WER and
    its isolation count."""
    targets = []
    for scenario in STT_SCENARIOS:
        want = max((lv["concurrency"] for lv in _levels(doc, scenario, "server")), default=16)
        targets.append(_ratio_target(
            doc, f"{_sid(scenario)}_vs_plain", scenario, "plain", _PLAIN_THRESHOLDS[scenario],
            want=want, description=f"{scenario}: STT throughput (audio s/s) vs the plain "
                                   "server (faster-whisper transcribe, int8, 2x1 thread)",
        ))
        if scenario != "stt":  # "stt" vs naive is the first target
            targets.append(_ratio_target(
                doc, f"{_sid(scenario)}_vs_naive", scenario, "naive", None, want=want,
                description=f"{scenario}: STT throughput (audio s/s) vs naive",
            ))
        for baseline in ("ceiling", "ray"):
            if scenario == "stt" and _levels(doc, scenario, "plain") and _levels(
                doc, scenario, baseline
            ):
                targets.append(_baseline_vs_plain(doc, baseline))
        targets.append(_stt_wer_target(doc, scenario))
        targets.append(_isolation_target(doc, scenario))
    return targets


def _baseline_vs_plain(doc: dict[str, Any], baseline: str) -> dict[str, Any]:
    """The peers against the plain server, so every STT figure has the plain reference."""
    plain = _top(_levels(doc, "stt", "plain"))
    other = _levels(doc, "stt", baseline)[0]
    assert plain is not None
    value = other["audio_s_per_s"] / plain["audio_s_per_s"] if plain["audio_s_per_s"] else None
    return _target(f"stt_{baseline}_vs_plain",
                   f"stt: {baseline} (best layout) throughput vs the plain server (reported)",
                   value, ">=", None,
                   f"{other['audio_s_per_s']:.3g} vs {plain['audio_s_per_s']:.3g} audio s/s "
                   f"(plain at c={plain['concurrency']})")


def evaluate_targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    targets = [
        _ratio_target(doc, "stt_vs_naive", "stt", "naive", 3.0,
                      description="STT throughput (audio s/s) at 16 clients vs naive"),
        _ratio_target(doc, "stt_vs_ceiling", "stt", "ceiling", 0.9,
                      description="STT throughput (audio s/s) at 16 clients vs the bare-engine "
                                  "ceiling"),
        _ratio_target(doc, "stt_vs_ray", "stt", "ray", 1.25, p95_too=True,
                      description="STT throughput (audio s/s) at 16 clients vs Ray Serve "
                                  "(best), at equal or better p95"),
        _ratio_target(doc, "piper_vs_naive", "tts-piper", "naive", 1.6,
                      description="Piper throughput (audio s/s) at 16 clients vs naive"),
        _ratio_target(doc, "kokoro_vs_naive", "tts-kokoro", "naive", 1.6,
                      description="Kokoro throughput (audio s/s) at 16 clients vs naive"),
    ]
    targets += _stt_targets(doc)
    targets.append(_adaptive_info(doc))
    null = _levels(doc, "null", "server")
    best = max(null, key=lambda lv: lv["rps"]) if null else None
    targets.append(_target(
        "null_rps", "Null engine requests/s through gRPC and the batcher",
        best["rps"] if best else None, ">=", 5000.0,
        f"best at c={best['concurrency']}" if best else "not measured",
    ))
    null_extra = (doc.get("scenarios", {}).get("null") or {}).get("extra") or {}
    inprocess: dict[str, Any] | None = null_extra.get("batcher_inprocess")
    targets.append(_target(
        "batcher_overhead_p50", "Batcher overhead p50 in-process (ms, vs one executor hop)",
        inprocess["overhead_p50_ms"] if inprocess else None, "<=", 0.3,
        f"batcher p50 {inprocess['batcher_sequential']['p50_ms']:.3f} ms, executor hop "
        f"{inprocess['executor_hop']['p50_ms']:.3f} ms" if inprocess else "not measured",
    ))
    with_b, without_b = _at(null, 1), _at(_levels(doc, "null", "server-no-batcher"), 1)
    in_server = (
        with_b["latency"]["p50_ms"] - without_b["latency"]["p50_ms"]
        if with_b and without_b else None
    )
    targets.append(_target(
        "batcher_overhead_in_server_p50", "Batcher overhead p50 inside the server (ms, c=1: "
        "null engine with vs without the batcher)", in_server, "<=", 0.3,
    ))
    hits = _levels(doc, "cache-hit", "server-memory")
    first = _at(hits, 1)
    loaded = max(hits, key=lambda lv: lv["concurrency"]) if len(hits) > 1 else None
    targets.append(_target(
        "cache_hit_p50", "Cache hit p50 (ms), 5 s WAV, STT Transcribe, in-memory cache",
        first["latency"]["p50_ms"] if first else None, "<=", 2.0,
        (f"{first['cache_hits']}/{first['requests']} answers were hits; hit throughput "
         f"{loaded['rps']:.0f} req/s at c={loaded['concurrency']}") if first and loaded else "",
    ))
    stt_rss = _systems(doc, "stt").get("server", {}).get("peak_rss_mb")
    targets.append(_target("stt_rss_mb", "Peak RSS of the STT server with tiny.en (MB)",
                           stt_rss, "<=", 600.0))
    piper_rss = _systems(doc, "tts-piper").get("server", {}).get("peak_rss_mb")
    targets.append(_target("piper_rss_mb", "Peak RSS of a Piper-only server (MB)",
                           piper_rss, "<=", 300.0))
    return targets


def _adaptive_info(doc: dict[str, Any]) -> dict[str, Any]:
    """Adaptive waiting vs the fixed delay, throughput ratio at the top level (reported)."""
    fixed = _levels(doc, "stt", "server-fixed-delay")
    adaptive = _levels(doc, "stt", "server-adaptive")
    parts = []
    value = None
    shared = {lv["concurrency"] for lv in fixed} & {lv["concurrency"] for lv in adaptive}
    for level in sorted(shared):
        f, a = _at(fixed, level), _at(adaptive, level)
        assert f is not None and a is not None
        parts.append(f"c={level}: fixed {f['rps']:.3g} req/s p50 {_p50(f):.0f} ms p95 "
                     f"{_p95(f) or 0:.0f} ms; adaptive {a['rps']:.3g} req/s p50 {_p50(a):.0f} ms "
                     f"p95 {_p95(a) or 0:.0f} ms")
        value = a["rps"] / f["rps"] if f["rps"] else None
    return _target("adaptive_vs_fixed", "STT adaptive waiting vs fixed 100 ms delay, throughput "
                   "ratio at the top level (reported)", value, ">=", None, "; ".join(parts))


def _p50(level: dict[str, Any]) -> float:
    return float((level.get("latency") or {}).get("p50_ms") or 0.0)


# ------------------------------------------------------------------------------ capacity

_CAPACITY_SCENARIOS = (("stt", "stt"), ("piper", "tts-piper"), ("kokoro", "tts-kokoro"))


def capacity(doc: dict[str, Any]) -> dict[str, Any]:
    """Per-pod throughput for ``python -m tools.capacity --bench``: each engine's
    server at its highest measured concurrency (one server = one pod of this machine's size)."""
    per_pod = []
    cores = doc.get("machine", {}).get("nproc")
    for engine, scenario in _CAPACITY_SCENARIOS:
        levels = _levels(doc, scenario, "server")
        if not levels:
            continue
        top = max(levels, key=lambda lv: lv["concurrency"])
        if top["rps"] <= 0:
            continue
        per_pod.append({
            "engine": engine,
            "device": "cpu",
            "requests_per_s": top["rps"],
            "note": f"speech-bench {doc.get('name')}: server at {top['concurrency']} clients, "
                    f"{cores} cores, p95 {_p95(top) or 0:.0f} ms",
        })
    return {"per_pod": per_pod}


# --------------------------------------------------------------------------------- plots

_STYLE = {
    "server": ("tab:blue", "o", "-"),
    "server-memory": ("tab:blue", "o", "-"),
    "server-redis": ("tab:cyan", "s", "-"),
    "server-adaptive": ("tab:purple", "D", "--"),
    "server-fixed-delay": ("tab:pink", "P", "--"),
    "server-no-batcher": ("tab:cyan", "s", "--"),
    "bare-grpc-aio": ("tab:gray", "v", ":"),
    "naive": ("tab:red", "x", "-"),
    "plain": ("tab:olive", "s", "-."),
    "ceiling": ("tab:green", None, ":"),
    "ray": ("tab:orange", "^", "none"),
}


#: Speech scenarios are plotted in audio seconds per second (lengths are mixed, see the
#: targets); the null engine and cache hits in requests per second.
_REQUEST_SCENARIOS = ("null", "cache-hit")


def _draw(axes: Any, doc: dict[str, Any], scenario: str) -> bool:
    throughput, latency = axes
    key, unit = (
        ("rps", "requests / s") if scenario in _REQUEST_SCENARIOS
        else ("audio_s_per_s", "audio seconds / s")
    )
    drawn = False
    for name, system in _systems(doc, scenario).items():
        levels = [lv for lv in system.get("levels") or [] if lv.get("requests")]
        if not levels:
            continue
        color, marker, line = _STYLE.get(name, ("tab:gray", "o", "-"))
        if name == "ceiling":
            value = levels[0][key]
            throughput.axhline(value, color=color, linestyle=":",
                               label=f"ceiling ({value:.3g}, {levels[0].get('layout')})")
            drawn = True
            continue
        levels = sorted(levels, key=lambda lv: lv["concurrency"])
        xs = [lv["concurrency"] for lv in levels]
        throughput.plot(xs, [lv[key] for lv in levels], color=color, marker=marker or "o",
                        linestyle=line, label=name)
        p95 = [(lv.get("latency") or {}).get("p95_ms") for lv in levels]
        points = [(x, y) for x, y in zip(xs, p95, strict=True) if y is not None]
        if points:
            latency.plot(*zip(*points, strict=True), color=color, marker=marker or "o",
                         linestyle=line, label=name)
        drawn = True
    for ax, ylabel in ((throughput, unit), (latency, "p95 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
    latency.set_yscale("log")
    throughput.set_title(f"{scenario}: throughput")
    latency.set_title(f"{scenario}: p95 latency")
    if scenario in STT_SCENARIOS:
        # Correctness stands beside every speed figure: WER and the isolation count.
        wer, isolation = correctness_lines(doc, scenario)
        throughput.set_xlabel(f"concurrent clients\n{wer}", fontsize=7)
        latency.set_xlabel(f"concurrent clients\n{isolation}", fontsize=7)
    return drawn


def write_plots(doc: dict[str, Any], out_dir: Path, name: str) -> list[str]:
    """One PNG per scenario plus an overview; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []
    scenarios = [s for s in doc.get("scenarios", {}) if any(
        lv.get("requests") for sys in _systems(doc, s).values() for lv in sys.get("levels") or []
    )]
    for scenario in scenarios:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        _draw(axes, doc, scenario)
        figure.tight_layout()
        path = out_dir / f"{name}-{scenario}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path.name)
    rows = max(len(scenarios), 1)
    figure, grid = plt.subplots(rows, 2, figsize=(10, 3.2 * rows), squeeze=False)
    for row, scenario in enumerate(scenarios):
        _draw(grid[row], doc, scenario)
    figure.suptitle(f"speech-bench {name}: {doc.get('machine', {}).get('cpu_model', '')}, "
                    f"{doc.get('machine', {}).get('nproc')} cores", fontsize=10)
    figure.tight_layout()
    path = out_dir / f"{name}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.insert(0, path.name)
    return written


# ------------------------------------------------------------------------------ markdown


def _reason(text: Any) -> str:
    """One line, short: reasons may hold a server's log tail."""
    line = " ".join(str(text).split())
    return line if len(line) <= 160 else line[:157] + "..."


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def markdown(doc: dict[str, Any]) -> str:
    """The figures table (per scenario, system and level) and the targets table."""
    lines = ["| scenario | system | clients | req/s | audio s/s | p50 ms | p95 ms | p99 ms "
             "| WER | differ alone/load | mean batch | server CPU ms/req | peak RSS MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for scenario, entry in doc.get("scenarios", {}).items():
        if entry.get("status") != "ok":
            lines.append(f"| {scenario} | ({entry.get('status')}: {_reason(entry.get('reason'))}) "
                         "| | | | | | | | | | | |")
            continue
        for system_name, system in (entry.get("systems") or {}).items():
            if system.get("status") != "ok":
                lines.append(f"| {scenario} | {system_name} ({system.get('status')}: "
                             f"{_reason(system.get('reason'))}) | | | | | | | | | | | |")
                continue
            for level in system.get("levels") or []:
                latency = level.get("latency") or {}
                batcher = level.get("batcher") or {}
                clients = level.get("concurrency")
                label = system_name
                if level.get("layout"):
                    layout = level["layout"]
                    label += f" ({layout if isinstance(layout, str) else _ray_label(layout)})"
                isolation = level.get("isolation")
                differ = f"{isolation['differ']}/{isolation['compared']}" if isolation else "-"
                lines.append(
                    f"| {scenario} | {label} | {clients} | {_fmt(level.get('rps'))} "
                    f"| {_fmt(level.get('audio_s_per_s'))} | {_fmt(latency.get('p50_ms'))} "
                    f"| {_fmt(latency.get('p95_ms'))} | {_fmt(latency.get('p99_ms'))} "
                    f"| {_fmt(level.get('wer'), '.3f')} | {differ} "
                    f"| {_fmt(batcher.get('mean_batch_size'))} "
                    f"| {_fmt(level.get('server_cpu_ms_per_request'))} "
                    f"| {_fmt(system.get('peak_rss_mb'), '.0f')} |"
                )
    found = correctness(doc)
    if found:
        lines += ["", "Correctness (WER at each system's highest level; transcripts under "
                  "concurrent load that differ from the same request served alone, target 0):",
                  "", "| scenario | system | WER | differ / compared | example |",
                  "|---|---|---:|---:|---|"]
        for scenario, entry in found.items():
            for name, figures in entry.items():
                isolation = figures["isolation"]
                differ = f"{isolation['differ']} / {isolation['compared']}" if isolation else "-"
                example = (isolation or {}).get("examples") or []
                shown = (f"{example[0]['request']}: alone {example[0]['alone']!r}, under load "
                         f"{example[0]['under_load']!r}") if example else ""
                lines.append(f"| {scenario} | {name} | {_fmt(figures['wer'], '.3f')} "
                             f"| {differ} | {_reason(shown)} |")
    lines += ["", "| target | measured | wanted | met | detail |", "|---|---:|---:|:---:|---|"]
    for target in doc.get("targets", []):
        met = {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
        threshold = target["threshold"]
        wanted = "-" if threshold is None else f"{target['op']} {_fmt(threshold)}"
        lines.append(f"| {target['description']} | {_fmt(target['value'])} "
                     f"| {wanted} | {met} | {target['detail']} |")
    return "\n".join(lines) + "\n"


def _ray_label(layout: dict[str, Any]) -> str:
    return "{replicas}x{threads}, batch {max_batch_size}".format(**layout)

