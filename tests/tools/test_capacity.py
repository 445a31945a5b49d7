"""The capacity command: its arithmetic, its bench input, and the figures docs/capacity.md shows."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import ROOT
from tools import capacity

DOC = ROOT / "docs" / "capacity.md"


def plan(users: int, **overrides: object) -> capacity.Plan:
    options: dict[str, object] = {
        "requests_per_user_per_min": 6.0,
        "mix": capacity.SEED_MIX,
        "figures": capacity.default_figures(),
        "prices": capacity.default_prices(),
        "target_utilization": 0.7,
        "min_pods": 2,
    }
    options.update(overrides)
    return capacity.plan_capacity(users, **options)  # type: ignore[arg-type]


def test_the_seed_mix_is_70_20_10_with_gpu_for_stt_and_kokoro() -> None:
    mix = {(s.engine, s.device): s.share for s in capacity.SEED_MIX}
    assert mix == {("piper", "cpu"): 0.70, ("stt", "cuda"): 0.20, ("kokoro", "cuda"): 0.10}
    assert {s.device for s in capacity.mix_for("cpu")} == {"cpu"}


def test_pods_cover_demand_at_the_target_utilisation() -> None:
    result = plan(5000)
    figures = capacity.default_figures()
    prices = capacity.default_prices()
    for line in result.lines:
        per_pod = figures[(line.engine, line.device)].requests_per_s
        assert line.demand_rps == pytest.approx(5000 * 6 / 60 * line.share)
        # enough pods, and not one more than needed
        assert line.pods * per_pod * 0.7 >= line.demand_rps
        assert (line.pods - 1) * per_pod * 0.7 < line.demand_rps
        assert line.usd_per_hour == pytest.approx(line.pods * prices[line.device].usd_per_pod_hour)
    assert result.usd_per_month == pytest.approx(result.usd_per_hour * 730)


def test_figures_derive_from_the_measured_inputs() -> None:
    figures = capacity.default_figures()
    piper = figures[("piper", "cpu")]
    assert piper.requests_per_s == pytest.approx(
        2 / (capacity.PIPER_RTF * capacity.MEAN_SENTENCE_AUDIO_S))
    assert piper.basis == "derived" and "assumed" in piper.note
    for key in (("stt", "cuda"), ("kokoro", "cuda")):
        assert figures[key].basis == "assumed"  # nothing was measured on a GPU


def test_more_users_never_need_fewer_pods() -> None:
    previous = plan(0)
    for users in (10, 100, 1000, 10_000, 100_000):
        current = plan(users)
        for before, after in zip(previous.lines, current.lines, strict=True):
            assert after.pods >= before.pods
        assert current.usd_per_hour >= previous.usd_per_hour
        previous = current
    assert all(line.pods == 2 for line in plan(0).lines)  # the HPA minimum


def test_cache_hits_shrink_synthesis_but_not_transcription() -> None:
    cold, warm = plan(20_000), plan(20_000, tts_cache_hit_ratio=0.5)
    for a, b in zip(cold.lines, warm.lines, strict=True):
        if a.engine == "stt":
            assert b.demand_rps == a.demand_rps
        else:
            assert b.demand_rps == pytest.approx(a.demand_rps / 2)
            assert b.pods < a.pods


@pytest.mark.parametrize(
    "overrides",
    [{"target_utilization": 0}, {"tts_cache_hit_ratio": 1.0},
     {"mix": capacity.SEED_MIX[:2]}],
)
def test_nonsense_inputs_are_refused(overrides: dict) -> None:
    with pytest.raises(ValueError):
        plan(100, **overrides)


def write_bench(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"capacity": {"per_pod": entries}}))
    return path


def test_bench_figures_replace_the_defaults(tmp_path: Path) -> None:
    bench_dir = tmp_path / "bench-results"
    bench_dir.mkdir()
    write_bench(bench_dir / "a.json", [{"engine": "stt", "device": "cuda", "requests_per_s": 10}])
    write_bench(bench_dir / "b.json", [{"engine": "stt", "device": "cuda", "requests_per_s": 12,
                                        "note": "H100"}])
    (bench_dir / "other.json").write_text(json.dumps({"scenarios": []}))
    figures = capacity.load_bench_figures([bench_dir])
    assert set(figures) == {("stt", "cuda")}
    assert figures[("stt", "cuda")].requests_per_s == 12  # later files win
    assert figures[("stt", "cuda")].basis == "bench"


@pytest.mark.parametrize(
    "entry",
    [{"engine": "whisper", "device": "cpu", "requests_per_s": 1},
     {"engine": "stt", "device": "tpu", "requests_per_s": 1},
     {"engine": "stt", "device": "cpu", "requests_per_s": -1},
     {"engine": "stt", "device": "cpu", "requests_per_s": "fast"}],
)
def test_bad_bench_entries_are_refused(tmp_path: Path, entry: dict) -> None:
    with pytest.raises(ValueError):
        capacity.load_bench_figures([write_bench(tmp_path / "x.json", [entry])])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.capacity", *args],
                          capture_output=True, text=True, check=False, cwd=ROOT)


def test_cli_json_uses_the_bench_file(tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench.json",
                        [{"engine": "piper", "device": "cpu", "requests_per_s": 5}])
    result = run_cli("--users", "1000", "--bench", str(bench), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    piper = next(line for line in out["lines"] if line["engine"] == "piper")
    assert piper["per_pod_rps"] == 5 and piper["basis"] == "bench"
    assert piper["pods"] == math.ceil(70 / (5 * 0.7))
    assert {f["basis"] for f in out["figures"]} == {"bench", "assumed"}
    assert all("assumed" in p["note"] for p in out["prices"].values())


def test_cli_reports_a_broken_bench_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = run_cli("--users", "10", "--bench", str(broken))
    assert result.returncode == 2
    assert "--bench" in result.stderr
    assert run_cli("--users", "10", "--bench", str(tmp_path / "missing.json")).returncode == 2


def test_the_doc_shows_what_the_command_prints() -> None:
    """Each ```capacity block of docs/capacity.md is the command's exact current output."""
    blocks = re.findall(r"```text\n\$ python -m tools\.capacity (.*?)\n(.*?)```",
                        DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    for args, shown in blocks:
        result = run_cli(*args.split())
        assert result.returncode == 0, result.stderr
        assert shown.strip() == result.stdout.strip(), args
