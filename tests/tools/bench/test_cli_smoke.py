"""The bench command end to end in a tiny configuration: the null engine against its naive
baseline at two concurrency levels. Checks the results schema and the plots; never speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

Run = tuple[subprocess.CompletedProcess[str], Path]

ROOT = Path(__file__).resolve().parents[3]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEVEL_KEYS = {
    "concurrency", "window_s", "warmup_s", "requests", "issued", "codes", "rps",
    "audio_s_per_s", "latency", "wer", "server_cpu_s", "server_cpu_ms_per_request", "batcher",
    "loadavg_1m",
}
LATENCY_KEYS = {"count", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable, "-m", "tools.bench.cli",
        "--scenarios", "null", "--baselines", "naive", "--concurrency", "1,4",
        "--window-s", "1", "--max-warmup-s", "10", "--out", str(out), "--name", "smoke",
        "--log-dir", str(out / "logs"), "--no-progress",
    ]
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    return completed, out


@pytest.fixture(scope="module")
def results(smoke_run: Run) -> dict:
    completed, out = smoke_run
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((out / "smoke.json").read_text())


def test_document_describes_the_machine_and_the_run(results: dict) -> None:
    assert results["schema"] == "speech-bench/1"
    assert results["name"] == "smoke"
    machine = results["machine"]
    assert isinstance(machine["nproc"], int) and machine["nproc"] >= 1
    assert machine["cpu_model"]
    assert machine["memory_gib"] > 0
    assert results["versions"]["grpcio"]
    assert results["options"]["scenarios"] == ["null"]
    assert results["options"]["baselines"] == ["naive"]
    assert results["duration_s"] > 0


def test_every_system_measured_both_levels(results: dict) -> None:
    scenario = results["scenarios"]["null"]
    assert scenario["status"] == "ok", scenario["reason"]
    assert set(scenario["systems"]) == {"server", "server-no-batcher", "bare-grpc-aio", "naive"}
    for name, system in scenario["systems"].items():
        assert system["status"] == "ok", (name, system["reason"])
        assert [lv["concurrency"] for lv in system["levels"]] == [1, 4]
        assert system["peak_rss_mb"] > 0
        for level in system["levels"]:
            assert set(level) >= LEVEL_KEYS, LEVEL_KEYS - set(level)
            assert set(level["latency"]) == LATENCY_KEYS
            assert level["requests"] > 0
            assert level["codes"] == {"OK": level["requests"]}
            assert level["rps"] == pytest.approx(level["requests"] / level["window_s"], rel=1e-3)
            latency = level["latency"]
            assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency[
                "max_ms"
            ]
            assert level["server_cpu_s"] is not None and level["server_cpu_s"] >= 0


def test_batch_sizes_come_from_the_server_metrics(results: dict) -> None:
    systems = results["scenarios"]["null"]["systems"]
    for level in systems["server"]["levels"]:
        batcher = level["batcher"]
        assert batcher["batches"] > 0
        assert 1 <= batcher["mean_batch_size"] <= level["concurrency"]
        assert sum(batcher["batch_size_histogram"].values()) == batcher["batches"]
    # Without a batcher the server exports no batches for the null engine.
    for level in systems["server-no-batcher"]["levels"]:
        assert not (level["batcher"] or {}).get("batches")
    # The bare grpc.aio server has the metrics endpoint's port but serves no /metrics.
    assert all(level["batcher"] is None for level in systems["bare-grpc-aio"]["levels"])
    # The naive server has no /metrics at all.
    assert all(level["batcher"] is None for level in systems["naive"]["levels"])


def test_batcher_measured_in_process(results: dict) -> None:
    inprocess = results["scenarios"]["null"]["extra"]["batcher_inprocess"]
    assert inprocess["batcher_sequential"]["count"] > 0
    assert inprocess["executor_hop"]["count"] > 0
    assert inprocess["overhead_p50_ms"] == pytest.approx(
        inprocess["batcher_sequential"]["p50_ms"] - inprocess["executor_hop"]["p50_ms"]
    )
    assert inprocess["batcher_concurrent"]["items_per_s"] > 0


def test_targets_are_judged_from_the_figures(results: dict) -> None:
    targets = {t["id"]: t for t in results["targets"]}
    best = max(lv["rps"] for lv in results["scenarios"]["null"]["systems"]["server"]["levels"])
    null_rps = targets["null_rps"]
    assert null_rps["value"] == pytest.approx(best)
    assert null_rps["met"] is (best >= 5000)
    # Scenarios not run are reported as not measured, never as met.
    assert targets["stt_vs_naive"]["met"] is None
    assert targets["stt_rss_mb"]["met"] is None
    for target in targets.values():
        assert target["met"] in (True, False, None)


def test_plots_are_written(results: dict, smoke_run: Run) -> None:
    _, out = smoke_run
    assert results["plots"] == ["smoke.png", "smoke-null.png"]
    for name in results["plots"]:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_markdown_table_is_printed(smoke_run: Run) -> None:
    completed, _ = smoke_run
    assert "| null | server | 1 |" in completed.stdout
    assert "| null | naive | 4 |" in completed.stdout
