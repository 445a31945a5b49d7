"""``python -m tools.bench``: benchmark the speech platform on this machine.

    python -m tools.bench                          # the full run (about 20-25 minutes on 2 cores)
    python -m tools.bench --scenarios null,stt --baselines naive --concurrency 1,16
    python -m tools.bench --scenario stt-short --baselines plain,naive    # one STT workload
    python -m tools.bench --target 127.0.0.1:50051 --scenarios stt     # drive a running server
    python -m tools.bench tune --engine stt   # sweep configs, write .venv/share/speech-tuned.yaml
    python -m tools.bench report bench-results/NAME.json               # redraw plots, print tables

Results: <out>/<name>.json (every figure, every target with met / not met), <name>.png (all
scenarios) and <name>-<scenario>.png. Only loopback addresses are ever used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tools.bench import report
from tools.bench.measure import Progress
from tools.bench.scenarios import (
    BASELINES,
    SCENARIOS,
    Context,
    RunOptions,
    run_scenario,
    step_count,
)

log = logging.getLogger(__name__)
_COMMANDS = ("run", "tune", "report", "overload")


def _csv(choices: tuple[str, ...]) -> Any:
    def parse(value: str) -> list[str]:
        if value in ("", "none"):
            return []
        items = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in items if v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(choices)}")
        return items

    return parse


def _levels(value: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4,16: {error}") from None
    if not levels or levels[0] < 1 or levels[-1] > 1024:
        raise argparse.ArgumentTypeError("concurrency levels must lie in 1..1024")
    return levels


def loopback_target(value: str) -> str:
    """host:port whose host resolves to loopback addresses only."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected host:port")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:
        raise argparse.ArgumentTypeError(f"cannot resolve {host!r}: {error}") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise argparse.ArgumentTypeError(
            f"{host} is not a loopback address ({', '.join(sorted(addresses))}); the bench "
            "only drives servers on this machine"
        )
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="measure scenarios and baselines (the default)")
    run.add_argument("--scenarios", "--scenario", type=_csv(SCENARIOS), default=list(SCENARIOS),
                     help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all). STT "
                          "workloads: stt (LibriVox mix, 3-30 s), stt-short (distinct 1-10 s "
                          "clips), stt-same (32 clients send one 3.5 s command), stt-repeat "
                          "(recurring commands), stt-long (30 s conversations)")
    run.add_argument("--baselines", type=_csv(BASELINES), default=list(BASELINES),
                     help="comma-separated, from naive, plain (the plain faster-whisper server, "
                          "STT only), ceiling, ray, or 'none' (default: all)")
    run.add_argument("--target", type=loopback_target,
                     help="drive this running server (host:port on loopback) instead of "
                          "starting one")
    run.add_argument("--target-metrics-port", type=int,
                     help="the running server's /metrics port, for batch sizes")
    run.add_argument("--config", type=Path,
                     help="server YAML config (settings format) to benchmark, e.g. a tuned one")
    run.add_argument("--concurrency", type=_levels,
                     help="client counts for every scenario, e.g. 1,4,16 (default per scenario)")
    run.add_argument("--window-s", type=_positive,
                     help="measurement window per level in seconds (default per scenario)")
    run.add_argument("--max-warmup-s", type=_positive, default=30.0,
                     help="longest warm-up per level (default 30)")
    run.add_argument("--adaptive-target-ms", type=_positive, default=2000.0,
                     help="latency target of the adaptive-waiting STT server (default 2000)")
    run.add_argument("--await-quiet-s", type=float, default=0.0,
                     help="on a shared machine: before each measurement wait up to this long "
                          "until other processes use < 0.3 cores (default 0: do not wait)")
    run.add_argument("--out", type=Path, default=Path("bench-results"))
    run.add_argument("--name", help="file stem of the results (default: cpu<N>-<date>)")
    run.add_argument("--log-dir", type=Path, help="server logs (default: a temporary folder)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    tune = commands.add_parser("tune", help="sweep configurations, write the best as YAML")
    tune.add_argument("--engine", choices=["stt", "piper", "kokoro"], required=True)
    tune.add_argument("--out", type=Path, default=None,
                      help="YAML to write or update (default .venv/share/speech-tuned.yaml)")
    tune.add_argument("--concurrency", type=int, default=16)
    tune.add_argument("--window-s", type=_positive, default=None,
                      help="window per point (default 10 for stt, 8 for TTS)")
    tune.add_argument("--max-warmup-s", type=_positive, default=30.0)
    tune.add_argument("--p95-slo-ms", type=_positive, help="only configs with p95 under this")
    tune.add_argument("--config", type=Path, help="base YAML config the sweep starts from")
    tune.add_argument("--max-points", type=int, help="try only the first N grid points")
    tune.add_argument("--log-dir", type=Path)
    tune.add_argument("--no-progress", action="store_true")

    redraw = commands.add_parser("report", help="redraw plots and print tables from a JSON")
    redraw.add_argument("results", type=Path)

    from tools.bench import overload

    load = commands.add_parser(
        "overload",
        help="1,000 callers at once, and a flood beside a polite caller (tools/bench/overload.py)",
    )
    overload.add_arguments(load)
    return parser


def _progress_bar(total: int, disabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="step", file=sys.stderr, disable=disabled, dynamic_ncols=True)


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a YAML mapping")
    return data


def _log_dir(requested: Path | None) -> Path:
    return requested or Path(tempfile.mkdtemp(prefix="speech-bench-"))


def run_command(args: argparse.Namespace) -> int:
    machine = report.machine()
    name = args.name or f"cpu{machine['nproc']}-{dt.date.today().isoformat()}"
    options = RunOptions(
        scenarios=list(args.scenarios),
        baselines=set(args.baselines),
        out_dir=args.out,
        name=name,
        target=args.target,
        target_metrics_port=args.target_metrics_port,
        base_config=_read_config(args.config),
        levels=args.concurrency,
        window_s=args.window_s,
        max_warmup_s=args.max_warmup_s,
        adaptive_target_ms=args.adaptive_target_ms,
        await_quiet_s=args.await_quiet_s,
    )
    log_dir = _log_dir(args.log_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{name}.json"
    doc: dict[str, Any] = {
        "schema": report.SCHEMA,
        "name": name,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "versions": report.versions(),
        "options": {
            "scenarios": options.scenarios,
            "baselines": sorted(str(b) for b in options.baselines),
            "target": options.target,
            "config_file": str(args.config) if args.config else None,
            "plans": {s: dict(options.plan(s).__dict__) for s in options.scenarios},
            "max_warmup_s": options.max_warmup_s,
            "adaptive_target_ms": options.adaptive_target_ms,
            "await_quiet_s": options.await_quiet_s,
        },
        "scenarios": {},
    }
    started = time.perf_counter()
    bar = _progress_bar(step_count(options), args.no_progress)
    context = Context(options, log_dir, Progress(bar))
    try:
        for scenario in options.scenarios:
            outcome, seconds = run_scenario(context, scenario)
            doc["scenarios"][scenario] = {**outcome.as_dict(), "duration_s": round(seconds, 1)}
            _write_json(json_path, doc)  # partial results survive an interrupted run
    finally:
        bar.close()
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    doc["targets"] = report.evaluate_targets(doc)
    doc["correctness"] = report.correctness(doc)
    doc["capacity"] = report.capacity(doc)
    doc["plots"] = report.write_plots(doc, args.out, name)
    _write_json(json_path, doc)
    print(report.markdown(doc))
    print(f"results: {json_path} (+ {', '.join(doc['plots'])} in {args.out}); "
          f"server logs: {log_dir}", file=sys.stderr)
    failed = [s for s, e in doc["scenarios"].items() if e["status"] == "failed"]
    return 1 if failed and len(failed) == len(doc["scenarios"]) else 0


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n")
    partial.replace(path)


def tune_command(args: argparse.Namespace) -> int:
    from tools.bench import tune

    out = args.out or tune.DEFAULT_TUNED_PATH
    window = args.window_s or (10.0 if args.engine == "stt" else 8.0)
    points = len(tune.grid(args.engine, report.machine()["nproc"] or 1))
    if args.max_points:
        points = min(points, args.max_points)
    bar = _progress_bar(points, args.no_progress)
    try:
        result = tune.tune(
            args.engine, out=out, concurrency=args.concurrency, window_s=window,
            max_warmup_s=args.max_warmup_s, p95_slo_ms=args.p95_slo_ms,
            base_config=_read_config(args.config), log_dir=_log_dir(args.log_dir),
            progress_bar=bar, max_points=args.max_points,
        )
    finally:
        bar.close()
    for point in result["points"]:
        latency = point.get("latency") or {}
        print(f"{point['label']:>32}: {point.get('rps', 0):8.3g} req/s  "
              f"p95 {latency.get('p95_ms') or float('nan'):8.0f} ms  "
              f"{point.get('error', '')}")
    if result.get("best") is None:
        print("no configuration produced results; nothing written", file=sys.stderr)
        return 1
    print(f"best: {result['best']}; wrote {out} (sweep: {result['sweep_file']})\n"
          f"the server uses it with: speech-server --config {out}  "
          f"(or SPEECH_CONFIG_FILE={out}); benchmark it with: python -m tools.bench --config {out}")
    return 0


def overload_command(args: argparse.Namespace) -> int:
    from tools.bench import overload

    return overload.command(args)


def report_command(args: argparse.Namespace) -> int:
    doc = json.loads(args.results.read_text())
    doc["targets"] = report.evaluate_targets(doc)
    doc["correctness"] = report.correctness(doc)
    doc["plots"] = report.write_plots(doc, args.results.parent, args.results.stem)
    print(report.markdown(doc))
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handlers = {
        "run": run_command,
        "tune": tune_command,
        "report": report_command,
        "overload": overload_command,
    }
    sys.exit(handlers[args.command](args))


if __name__ == "__main__":
    main()
