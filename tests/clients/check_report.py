"""What the Node and the Go check programs report, checked the same way for both."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.clients.conftest import SPEECH_TEXT, has_words


def run_check(command: list[str]) -> dict[str, Any]:
    """Runs a client's check program; its own checks must pass and its report must parse."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["failures"] == []
    return report


def assert_real_results(report: dict[str, Any]) -> None:
    """The four RPCs gave real results: words of the recording, speech of plausible length."""
    assert has_words(report["transcribe"]["text"])
    finals = report["streaming_transcribe"]["finals"]
    assert finals and has_words(" ".join(finals))
    speech = report["synthesize"]
    assert speech["engine"] == "piper" and speech["sample_rate_hertz"] == 22050
    # 16-bit samples; a spoken sentence pair of 61 characters lasts a few seconds.
    assert speech["bytes"] == round(speech["seconds"] * 22050) * 2
    assert 1.5 < speech["seconds"] < 0.2 * len(SPEECH_TEXT)
    streamed = report["streaming_synthesize"]
    assert streamed["parts"] == 2
    assert abs(streamed["seconds"] - speech["seconds"]) < 1.0


def check_arguments(address: str, wav: str, words: tuple[str, ...], token: str) -> list[str]:
    return ["--target", address, "--token", token, "--wav", wav, "--expect", ",".join(words),
            "--text", SPEECH_TEXT]
