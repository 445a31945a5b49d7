"""``python -m tools.capacity``: pods and cost for N concurrent users.

It turns per-pod throughput into a pod count per Deployment and an hourly cost, for the
request mix the platform was designed around (70% Piper TTS on CPU, 20% STT and 10% Kokoro on
GPU). Per-pod throughput comes from a benchmark JSON when one is given (``--bench``), else from
the figures below, each tagged with how much of it was measured: the arithmetic is simple on
purpose, so that a reader can check every number (docs/capacity.md walks through it).

Bench JSON: any file with a ``capacity.per_pod`` list, e.g. written by ``python -m tools.bench``::

    {"capacity": {"per_pod": [
        {"engine": "piper", "device": "cpu", "requests_per_s": 15.2, "note": "2-core pod"}]}}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Engine = Literal["piper", "stt", "kokoro"]
Device = Literal["cpu", "cuda"]
Basis = Literal["measured", "derived", "assumed", "bench"]
ENGINES: tuple[Engine, ...] = ("piper", "stt", "kokoro")
DEVICES: tuple[Device, ...] = ("cpu", "cuda")

# -- measured on a 2-core CPU (shared/ASSETS.md; faster-whisper 1.2.1, ctranslate2 4.8.5) ------
#: Piper joe-medium real-time factor per single-threaded instance (worst of 0.035-0.041).
PIPER_RTF = 0.041
#: Kokoro int8 real-time factor, one instance with two threads (worst of 0.30-0.35).
KOKORO_RTF_2_THREADS = 0.35
#: Whisper tiny.en, beam 5: one 4.7 s clip took 0.52-0.64 s on one instance with 2 threads.
STT_CLIP_SECONDS = 4.7
STT_CLIP_LATENCY_S = 0.64
#: Two single-threaded instances served 2.1x the requests of one two-threaded instance.
STT_TWO_INSTANCE_GAIN = 2.1
# -- assumed ----------------------------------------------------------------------------------
#: Mean length of one synthesized sentence (a short interview question).
MEAN_SENTENCE_AUDIO_S = 3.0


@dataclass(frozen=True)
class PodFigure:
    """Sustained requests per second one pod of an engine serves near saturation."""

    engine: Engine
    device: Device
    requests_per_s: float
    basis: Basis
    note: str


def default_figures() -> dict[tuple[Engine, Device], PodFigure]:
    """Per-pod figures of the k8s/ Deployments (2-core CPU pods; one GPU per GPU pod)."""
    piper = 2 / (PIPER_RTF * MEAN_SENTENCE_AUDIO_S)
    stt_cpu = STT_TWO_INSTANCE_GAIN / STT_CLIP_LATENCY_S
    kokoro_cpu = 1 / (KOKORO_RTF_2_THREADS * MEAN_SENTENCE_AUDIO_S)
    figures = [
        PodFigure(
            "piper", "cpu", piper, "derived",
            f"2 instances x 1/(RTF {PIPER_RTF} measured x {MEAN_SENTENCE_AUDIO_S:g} s sentence "
            "assumed)",
        ),
        PodFigure(
            "stt", "cpu", stt_cpu, "derived",
            f"{STT_TWO_INSTANCE_GAIN}x (measured) / {STT_CLIP_LATENCY_S} s per "
            f"{STT_CLIP_SECONDS} s clip (measured), tiny.en beam 5",
        ),
        PodFigure(
            "kokoro", "cpu", kokoro_cpu, "derived",
            f"1/(RTF {KOKORO_RTF_2_THREADS} measured x {MEAN_SENTENCE_AUDIO_S:g} s sentence "
            "assumed)",
        ),
        PodFigure(
            "stt", "cuda", 30.0, "assumed",
            "not measured: one GPU, tiny.en float16, batches of up to 32 ~5 s clips",
        ),
        PodFigure(
            "kokoro", "cuda", 4.0, "assumed",
            "not measured: int8 graph on CUDA runs its int8 operators on the CPU",
        ),
    ]
    return {(f.engine, f.device): f for f in figures}


@dataclass(frozen=True)
class Price:
    device: Device
    usd_per_pod_hour: float
    note: str


def default_prices() -> dict[Device, Price]:
    """Assumed on-demand list prices: check your provider's; override with the flags."""
    return {
        "cpu": Price("cpu", 0.089, "assumed: a 2 vCPU / 4 GiB on-demand VM per 2-core pod"),
        "cuda": Price("cuda", 0.526, "assumed: a 1x NVIDIA T4, 4 vCPU / 16 GiB on-demand VM"),
    }


@dataclass(frozen=True)
class WorkloadShare:
    engine: Engine
    device: Device
    share: float


#: The request mix the platform was sized for.
SEED_MIX: tuple[WorkloadShare, ...] = (
    WorkloadShare("piper", "cpu", 0.70),
    WorkloadShare("stt", "cuda", 0.20),
    WorkloadShare("kokoro", "cuda", 0.10),
)


@dataclass(frozen=True)
class Line:
    engine: Engine
    device: Device
    share: float
    demand_rps: float
    per_pod_rps: float
    basis: Basis
    pods: int
    usd_per_hour: float


@dataclass(frozen=True)
class Plan:
    users: int
    requests_per_user_per_min: float
    target_utilization: float
    min_pods: int
    lines: list[Line]
    notes: list[str] = field(default_factory=list)
    tts_cache_hit_ratio: float = 0.0

    @property
    def total_rps(self) -> float:
        return self.users * self.requests_per_user_per_min / 60

    @property
    def usd_per_hour(self) -> float:
        return sum(line.usd_per_hour for line in self.lines)

    @property
    def usd_per_month(self) -> float:
        return self.usd_per_hour * HOURS_PER_MONTH


HOURS_PER_MONTH = 730


def plan_capacity(
    users: int,
    *,
    requests_per_user_per_min: float,
    mix: Sequence[WorkloadShare],
    figures: dict[tuple[Engine, Device], PodFigure],
    prices: dict[Device, Price],
    target_utilization: float,
    min_pods: int,
    tts_cache_hit_ratio: float = 0.0,
) -> Plan:
    """Pods per engine: demand over what a pod serves at the autoscaler's target utilisation.

    Synthesis requests answered from the cache (repeated questions) cost no engine time, so
    the TTS demand shrinks by ``tts_cache_hit_ratio``; STT requests are never repeated.

    >>> p = plan_capacity(100, requests_per_user_per_min=6, mix=SEED_MIX,
    ...     figures=default_figures(), prices=default_prices(), target_utilization=0.7,
    ...     min_pods=2)
    >>> [(line.engine, line.pods) for line in p.lines]
    [('piper', 2), ('stt', 2), ('kokoro', 2)]
    """
    if users < 0:
        raise ValueError("users must be >= 0")
    if not 0 < target_utilization <= 1:
        raise ValueError("target utilization must be in (0, 1]")
    if abs(sum(s.share for s in mix) - 1.0) > 1e-9:
        raise ValueError("the shares of the mix must add up to 1")
    if not 0 <= tts_cache_hit_ratio < 1:
        raise ValueError("the TTS cache hit ratio must be in [0, 1)")
    total_rps = users * requests_per_user_per_min / 60
    lines = []
    for share in mix:
        figure = figures.get((share.engine, share.device))
        if figure is None:
            raise ValueError(f"no per-pod figure for {share.engine} on {share.device}")
        demand = total_rps * share.share
        if share.engine != "stt":
            demand *= 1 - tts_cache_hit_ratio
        pods = max(min_pods, math.ceil(demand / (figure.requests_per_s * target_utilization)))
        lines.append(
            Line(
                engine=share.engine,
                device=share.device,
                share=share.share,
                demand_rps=demand,
                per_pod_rps=figure.requests_per_s,
                basis=figure.basis,
                pods=pods,
                usd_per_hour=pods * prices[share.device].usd_per_pod_hour,
            )
        )
    return Plan(
        users, requests_per_user_per_min, target_utilization, min_pods, lines,
        tts_cache_hit_ratio=tts_cache_hit_ratio,
    )


def load_bench_figures(paths: Iterable[Path]) -> dict[tuple[Engine, Device], PodFigure]:
    """Per-pod figures from benchmark JSON files (a directory means its *.json, by name)."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    figures: dict[tuple[Engine, Device], PodFigure] = {}
    for file in files:
        data = json.loads(file.read_text())
        entries = data.get("capacity", {}).get("per_pod", []) if isinstance(data, dict) else []
        for entry in entries:
            figure = _bench_entry(entry, file)
            figures[(figure.engine, figure.device)] = figure
    return figures


def _bench_entry(entry: object, source: Path) -> PodFigure:
    if not isinstance(entry, dict):
        raise ValueError(f"{source}: capacity.per_pod entries must be objects")
    engine, device, rps = entry.get("engine"), entry.get("device"), entry.get("requests_per_s")
    if engine not in ENGINES or device not in DEVICES:
        raise ValueError(f"{source}: unknown engine/device {engine!r}/{device!r}")
    if not isinstance(rps, int | float) or isinstance(rps, bool) or rps <= 0:
        raise ValueError(f"{source}: requests_per_s must be a positive number, got {rps!r}")
    note = str(entry.get("note", ""))
    return PodFigure(engine, device, float(rps), "bench", f"{source.name}: {note}".rstrip(": "))


def mix_for(overlay: Literal["gpu", "cpu"]) -> tuple[WorkloadShare, ...]:
    """The seed mix on the gpu overlay; on the cpu overlay every engine runs on CPU pods."""
    if overlay == "gpu":
        return SEED_MIX
    return tuple(WorkloadShare(s.engine, "cpu", s.share) for s in SEED_MIX)


def render_table(plan: Plan, figures: dict[tuple[Engine, Device], PodFigure]) -> str:
    rows = [
        f"{plan.users} concurrent users x {plan.requests_per_user_per_min:g} requests/min "
        f"= {plan.total_rps:.1f} requests/s; pods sized for {plan.target_utilization:.0%} "
        f"utilisation, at least {plan.min_pods} each; TTS cache hit ratio "
        f"{plan.tts_cache_hit_ratio:.0%}",
        "",
        f"{'engine':<8}{'device':<7}{'share':>6}{'req/s':>9}{'per pod':>9}  {'basis':<9}"
        f"{'pods':>5}{'USD/h':>9}",
    ]
    for line in plan.lines:
        rows.append(
            f"{line.engine:<8}{line.device:<7}{line.share:>6.0%}{line.demand_rps:>9.1f}"
            f"{line.per_pod_rps:>9.2f}  {line.basis:<9}{line.pods:>5}{line.usd_per_hour:>9.2f}"
        )
    rows += [
        f"{'total':<54}{sum(line.pods for line in plan.lines):>5}{plan.usd_per_hour:>9.2f}",
        "",
        f"USD per month ({HOURS_PER_MONTH} h): {plan.usd_per_month:,.0f}"
        + (
            f"; per 1000 users: {plan.usd_per_month / plan.users * 1000:,.0f}"
            if plan.users
            else ""
        ),
        "",
        "per-pod figures:",
    ]
    for line in plan.lines:
        figure = figures[(line.engine, line.device)]
        rows.append(f"  {line.engine}/{line.device}: {figure.basis}; {figure.note}")
    rows += [f"note: {note}" for note in plan.notes]
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.capacity",
        description="Pods and cost for N concurrent users (see docs/capacity.md).",
    )
    parser.add_argument("--users", type=int, required=True, help="concurrent users")
    parser.add_argument(
        "--requests-per-user-per-min", type=float, default=6.0,
        help="requests one active user causes per minute (assumed default: 6)",
    )
    parser.add_argument(
        "--bench", type=Path, action="append", default=[],
        help="benchmark JSON file or directory (bench-results/); repeatable",
    )
    parser.add_argument(
        "--tts-cache-hit-ratio", type=float, default=0.0,
        help="share of synthesis requests served from the cache (default 0: none)",
    )
    parser.add_argument("--overlay", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--target-utilization", type=float, default=0.7)
    parser.add_argument("--min-pods", type=int, default=2, help="per Deployment (HPA minimum)")
    parser.add_argument("--cpu-pod-usd-h", type=float, help="price of one 2-core CPU pod-hour")
    parser.add_argument("--gpu-pod-usd-h", type=float, help="price of one GPU pod-hour")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    figures = default_figures()
    notes = []
    if args.bench:
        try:
            bench = load_bench_figures(args.bench)
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            print(f"error: --bench: {error}", file=sys.stderr)
            return 2
        figures.update(bench)
        if not bench:
            notes.append("the --bench files hold no capacity.per_pod figures; defaults used")
    prices = default_prices()
    if args.cpu_pod_usd_h is not None:
        prices["cpu"] = Price("cpu", args.cpu_pod_usd_h, "given on the command line")
    if args.gpu_pod_usd_h is not None:
        prices["cuda"] = Price("cuda", args.gpu_pod_usd_h, "given on the command line")
    try:
        plan = plan_capacity(
            args.users,
            requests_per_user_per_min=args.requests_per_user_per_min,
            mix=mix_for(args.overlay),
            figures=figures,
            prices=prices,
            target_utilization=args.target_utilization,
            min_pods=args.min_pods,
            tts_cache_hit_ratio=args.tts_cache_hit_ratio,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    used = {(line.engine, line.device) for line in plan.lines}
    for device in sorted({line.device for line in plan.lines}):
        notes.append(f"price {device}: {prices[device].usd_per_pod_hour} USD/pod-hour, "
                     f"{prices[device].note}")
    plan = dataclasses.replace(plan, notes=notes)
    if args.json:
        out = {
            **{k: v for k, v in asdict(plan).items() if k != "lines"},
            "total_rps": plan.total_rps,
            "usd_per_hour": plan.usd_per_hour,
            "usd_per_month": plan.usd_per_month,
            "lines": [asdict(line) for line in plan.lines],
            "figures": [asdict(figures[key]) for key in sorted(used)],
            "prices": {d: asdict(prices[d]) for d in sorted({d for _, d in used})},
        }
        print(json.dumps(out, indent=2))
    else:
        print(render_table(plan, figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
