"""The one measurement harness that tools.measure.stt and tools.measure.tts share."""

from __future__ import annotations

import pytest

from tools.measure import harness, stt, tts


def test_rounds_interleave_every_configuration_in_the_same_order():
    calls = []

    def measure(module, name, clients):
        calls.append((module, name, clients))
        return {"config": name, "x": float(len(calls))}

    runs = harness.run_rounds("m", ["a", "b"], rounds=2, clients=4, measure=measure)
    assert [name for _, name, _ in calls] == ["a", "b", "a", "b"]
    assert {module for module, _, _ in calls} == {"m"} and {c for *_, c in calls} == {4}
    assert [r["x"] for r in runs["a"]] == [1.0, 3.0] and harness.median(runs["b"], "x") == 3.0


def test_the_summary_carries_the_shared_figures():
    summary = harness.timing_summary("c", [(0.5, 5.0), (1.5, 5.0)], 20.0, 4.0, [1, 2, 4], {2: 3})
    assert summary["config"] == "c" and summary["single_latency_s"] == pytest.approx(1.0)
    assert summary["throughput_audio_s_per_s"] == pytest.approx(5.0)
    assert summary["concurrent_p50_s"] == 2 and summary["concurrent_max_s"] == 4
    assert summary["batch_sizes"] == {2: 3} and summary["peak_rss_mb"] > 0


def test_both_measure_programs_use_it():
    for module in (stt, tts):
        parser_prog = module.main.__code__.co_consts
        assert "tools.measure." + module.__name__.rsplit(".", 1)[1] in parser_prog
        assert not hasattr(module, "_spawn") and not hasattr(module, "_peak_rss_mb")


def test_the_table_lines_up_every_configuration(capsys):
    runs = {"base": [{"x": 2.0, "peak_rss_mb": 10.0}, {"x": 4.0, "peak_rss_mb": 12.0}],
            "other": [{"x": 6.0, "peak_rss_mb": 20.0}]}
    harness.print_table(runs.items(), [
        ("x", "5.1f", harness.by_median("x")),
        ("x ratio", "7.2f", harness.by_median("x", harness.ratio_to(3.0))),
        ("RSS MB", "6.0f", harness.peak_rss),
    ], name_width=8)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "config       x x ratio RSS MB",
        "base       3.0    1.00     12",
        "other      6.0    2.00     20",
    ]
