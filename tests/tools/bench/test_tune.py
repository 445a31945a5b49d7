"""``python -m tools.bench tune`` end to end on Piper, cut to two grid points: real servers are
started, measured and stopped, and the winner lands in a YAML the server's settings load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from speech_platform.config import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_tune_writes_a_config_the_server_loads(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "tuned.yaml"
    out.write_text(yaml.safe_dump({"stt": {"instances": 1}}))  # another engine's tuning stays
    completed = subprocess.run(
        [sys.executable, "-m", "tools.bench.cli", "tune", "--engine", "piper",
         "--max-points", "2", "--concurrency", "2", "--window-s", "1", "--max-warmup-s", "60",
         "--out", str(out), "--log-dir", str(tmp_path / "logs"), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"speech-server --config {out}" in completed.stdout

    sweep = json.loads((tmp_path / "tuned.piper.json").read_text())
    assert sweep["engine"] == "piper" and len(sweep["points"]) == 2
    for point in sweep["points"]:
        assert "error" not in point, point.get("error")
        assert point["requests"] > 0 and point["rps"] > 0
        assert point["peak_rss_mb"] > 0
    labels = [p["label"] for p in sweep["points"]]
    assert sweep["best"] in labels
    best = next(p for p in sweep["points"] if p["label"] == sweep["best"])
    assert sweep["written"] == best["section"]

    monkeypatch.setenv("SPEECH_CONFIG_FILE", str(out))
    settings = Settings()
    written = best["section"]["tts"]
    assert settings.tts.piper_instances == written["piper_instances"]
    assert settings.tts.piper_threads == written["piper_threads"]
    assert settings.tts.piper_batcher.max_batch_size == written["piper_batcher"][
        "max_batch_size"
    ]
    assert settings.stt.instances == 1
    assert settings.tts.engines == ["piper", "kokoro"]  # the sweep's piper-only server stays out
