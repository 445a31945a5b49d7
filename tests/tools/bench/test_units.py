"""The bench's pure parts: WER, percentiles, the workload, metric deltas, target addresses,
config merging and the tuner's choice. Real libraries throughout (prometheus_client renders
the metrics text that is parsed back; pydantic settings load the YAML that is written)."""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import ValidationError

from speech_platform.config import Settings
from tools.bench import prom, tune, workload
from tools.bench.cli import loopback_target
from tools.bench.scenarios import DEFAULT_PLANS, RunOptions, deep_merge
from tools.bench.stats import LatencySummary, corpus_wer, normalise_words, word_edits


def test_wer_normalises_case_punctuation_and_small_numbers() -> None:
    assert normalise_words("Go forward, 10 meters!") == ["go", "forward", "ten", "meters"]
    assert normalise_words("It's 42.") == ["it's", "forty", "two"]
    assert corpus_wer([("go forward ten meters", "Go forward 10 meters.")]) == 0.0


def test_wer_counts_substitutions_insertions_and_deletions() -> None:
    assert word_edits(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert word_edits(["a", "b"], []) == 2
    # 1 edit over 4 + 2 reference words, summed over the corpus
    assert corpus_wer([("one two three four", "one two three"), ("five six", "five six")]) == (
        pytest.approx(1 / 6)
    )
    assert corpus_wer([]) is None


def test_latency_summary_orders_percentiles() -> None:
    summary = LatencySummary.of([0.001 * i for i in range(1, 101)])
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p50_ms < summary.p95_ms < summary.p99_ms <= summary.max_ms == pytest.approx(100)
    empty = LatencySummary.of([]).as_dict()
    assert empty["count"] == 0 and empty["p50_ms"] is None


def test_mixed_clips_span_three_to_thirty_seconds_with_references() -> None:
    clips = workload.mixed_clips()
    durations = [clip.duration_s for clip in clips]
    assert len(clips) == 12
    assert min(durations) < 3.0 and max(durations) > 25.0
    assert all(2.5 < d < 30.0 for d in durations)  # every clip fits one Whisper window
    recorded = {clip.name: clip for clip in workload.recorded_clips()}
    assert len(recorded) == 6 and recorded["goforward"].reference == "go forward ten meters"
    for clip in clips:
        assert clip.reference
        if clip.name.startswith("joined"):
            # a joined clip says what its parts say, in order
            assert any(clip.reference.startswith(r.reference) for r in recorded.values())
    wav = clips[0].wav_bytes()
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * len(clips[0].pcm)
    assert workload.five_second_clip().duration_s == 5.0


def test_requests_carry_their_audio_length_and_reference() -> None:
    from speech.v1 import stt_pb2, tts_pb2

    stt = workload.stt_requests()
    decoded = stt_pb2.TranscribeRequest.FromString(stt[0].payload)
    assert decoded.config.skip_cache and decoded.config.language_code == "en"
    assert stt[0].audio_s == pytest.approx(workload.mixed_clips()[0].duration_s)
    kokoro = tts_pb2.SynthesizeRequest.FromString(workload.tts_requests("kokoro")[0].payload)
    assert kokoro.tier == tts_pb2.VOICE_TIER_HIGH and kokoro.disable_fallback


def test_histogram_deltas_from_real_metrics_text() -> None:
    registry = CollectorRegistry()
    sizes = Histogram("speech_batcher_batch_size", "sizes", ["model"], buckets=(1, 2, 4, 8),
                      registry=registry)
    sizes.labels("a").observe(1)
    before = prom.histogram(generate_latest(registry).decode(), "speech_batcher_batch_size")
    for value in (2, 4, 4, 8):
        sizes.labels("a").observe(value)
    sizes.labels("b").observe(8)
    after_text = generate_latest(registry).decode()
    delta = prom.histogram(after_text, "speech_batcher_batch_size").minus(before)
    assert delta.count == 5 and delta.mean == pytest.approx(26 / 5)
    assert delta.per_bucket() == {"<=2": 1, "<=4": 2, "<=8": 2}
    only_a = prom.histogram(after_text, "speech_batcher_batch_size", model="a")
    assert only_a.count == 5


def test_counters_by_label_from_real_metrics_text() -> None:
    registry = CollectorRegistry()
    rejections = Counter("speech_batcher_rejections", "t", ["model", "reason"], registry=registry)
    rejections.labels("piper", "admission").inc(3)
    rejections.labels("piper", "caller_share").inc(2)
    rejections.labels("whisper", "admission").inc(1)
    rejections.labels("kokoro", "queue_full")  # created, never counted
    text = generate_latest(registry).decode()
    by_both = prom.counters(text, "speech_batcher_rejections_total", "model", "reason")
    assert by_both == {"piper/admission": 3, "piper/caller_share": 2, "whisper/admission": 1}
    assert prom.counters(text, "speech_batcher_rejections_total", "reason") == {
        "admission": 4, "caller_share": 2
    }
    assert prom.counters(text, "speech_refusals_total", "reason") == {}


@pytest.mark.parametrize("value", ["127.0.0.1:50051", "localhost:9", "[::1]:80"])
def test_loopback_targets_are_accepted(value: str) -> None:
    assert loopback_target(value).endswith(value.rsplit(":", 1)[1])


@pytest.mark.parametrize("value", ["10.1.2.3:50051", "8.8.8.8:53", "127.0.0.1", "host"])
def test_other_targets_are_refused(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        loopback_target(value)


def test_plans_follow_overrides() -> None:
    options = RunOptions(scenarios=["stt"], baselines=set(), out_dir=None, name="x",  # type: ignore[arg-type]
                         levels=(2, 8), window_s=1.5)
    plan = options.plan("stt")
    assert plan.levels == (2, 8) and plan.naive_levels == (2, 8) and plan.window_s == 1.5
    assert options.plan("cache-hit").naive_levels == ()
    assert DEFAULT_PLANS["stt"].levels[-1] == 16  # the targets are stated at 16 clients


def test_deep_merge_keeps_what_it_does_not_override() -> None:
    base: dict[str, Any] = {
        "stt": {"instances": 2, "batcher": {"max_batch_size": 8}}, "cache": {"backend": "x"}
    }
    merged = deep_merge(base, {"stt": {"batcher": {"max_queue_delay_ms": 0.0}}})
    assert merged["stt"] == {"instances": 2, "batcher": {"max_batch_size": 8,
                                                         "max_queue_delay_ms": 0.0}}
    assert base["stt"]["batcher"] == {"max_batch_size": 8}  # not mutated


@pytest.mark.parametrize("engine", ["stt", "piper", "kokoro"])
def test_tuning_grid_is_small_and_valid(engine: str) -> None:
    points = tune.grid(engine, cores=2)
    assert 2 <= len(points) <= tune.MAX_POINTS
    assert len({p.label for p in points}) == len(points)
    for point in points:
        Settings.model_validate(point.section)


def _point(label: str, rps: float, p95: float) -> dict:
    return {"label": label, "rps": rps, "latency": {"p95_ms": p95}}


def _chosen(results: list[dict], slo: float | None) -> str | None:
    best = tune.choose(results, slo)
    return None if best is None else best["label"]


def test_tuner_prefers_throughput_then_p95_within_noise() -> None:
    results = [_point("a", 10.0, 900), _point("b", 9.8, 500), _point("c", 8.0, 100)]
    assert _chosen(results, None) == "b"  # within 3 % of a, lower p95
    assert _chosen(results, 600) == "b"
    assert _chosen(results, 200) == "c"  # only c meets the SLO
    assert _chosen(results, 50) == "b"  # none meets it: throughput decides
    assert tune.choose([{"label": "x", "error": "boom"}], None) is None


def test_tuned_yaml_merges_and_loads_as_server_settings(tmp_path, monkeypatch) -> None:
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump({"stt": {"instances": 1, "cpu_threads": 2}}))
    tune.write_tuned(path, {"tts": {"piper_instances": 2, "piper_threads": 1}}, "note")
    text = path.read_text()
    assert text.startswith("# Tuned by `python -m tools.bench tune`")
    assert "speech-server --config" in text
    monkeypatch.setenv("SPEECH_CONFIG_FILE", str(path))
    settings = Settings()
    assert (settings.stt.instances, settings.stt.cpu_threads) == (1, 2)  # kept
    assert (settings.tts.piper_instances, settings.tts.piper_threads) == (2, 1)  # added


def test_invalid_tuned_section_is_refused_and_nothing_written(tmp_path) -> None:
    path = tmp_path / "tuned.yaml"
    with pytest.raises(ValidationError):
        tune.write_tuned(path, {"stt": {"instances": 0}}, "note")
    assert not path.exists()


def test_capacity_figures_load_in_the_capacity_command(tmp_path) -> None:
    import json

    from tools.bench.report import capacity
    from tools.capacity import load_bench_figures

    def level(concurrency: int, rps: float) -> dict[str, Any]:
        return {"concurrency": concurrency, "requests": 10, "rps": rps,
                "latency": {"p95_ms": 900.0}}

    doc: dict[str, Any] = {"name": "t", "machine": {"nproc": 2}, "scenarios": {
        "stt": {"systems": {"server": {"levels": [level(1, 0.5), level(16, 1.5)]},
                            "naive": {"levels": [level(16, 0.4)]}}},
        "tts-piper": {"systems": {"server": {"levels": [level(16, 4.0)]}}},
    }}
    doc["capacity"] = capacity(doc)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    figures = load_bench_figures([path])
    assert figures[("stt", "cpu")].requests_per_s == 1.5  # the server at its top level
    assert figures[("piper", "cpu")].requests_per_s == 4.0
    assert ("kokoro", "cpu") not in figures  # not measured: the command keeps its defaults


def test_hostile_inputs_are_what_they_claim() -> None:
    import wave

    from google.protobuf.message import DecodeError

    from speech.v1 import tts_pb2
    from tools.bench import hostile

    with pytest.raises(DecodeError):  # a string field that is not UTF-8: a malformed message
        tts_pb2.SynthesizeRequest.FromString(hostile._not_utf8())
    with wave.open(io.BytesIO(hostile._wav(64_000_000, bytes(32 * 1024))), "rb") as declared:
        assert declared.getframerate() == 64_000_000 and declared.getnframes() == 16 * 1024
    flac = hostile._flac(384_000, 0.1)
    assert flac[:4] == b"fLaC"
    assert int.from_bytes(flac[18:21], "big") >> 4 == 384_000  # STREAMINFO's sample rate
    assert set(hostile.cases()) >= {"wav_64mhz", "flac_384khz", "not_utf8", "streams_x100"}
