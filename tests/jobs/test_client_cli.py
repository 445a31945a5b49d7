"""``speech-jobs`` as a user runs it: a subprocess against a real server (embedded backend)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.jobs.recordings import Recording
from tests.support.server import ROOT, RunningServer

pytestmark = pytest.mark.slow

CLI = str(ROOT / ".venv" / "bin" / "speech-jobs")


async def speech_jobs(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the CLI in a thread: the server shares this test's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [CLI, "--server", server.address, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_submit_a_file_and_watch_it_with_a_progress_bar(
    local_server: RunningServer, make_recording: Callable[[float], Recording], tmp_path: Path
):
    recording = make_recording(45.0)
    audio = tmp_path / "interview.wav"
    audio.write_bytes(recording.wav)
    done = await speech_jobs(
        local_server, "submit-transcription", str(audio), "--beam-size", "1", "--word-times"
    )
    assert done.returncode == 0, done.stderr
    status, transcript = done.stdout.splitlines()[:2]
    assert "SUCCEEDED" in status and "100.0%" in status
    assert "Dashwood" in transcript
    assert "100%" in done.stderr  # tqdm's bar reached the end


async def test_submit_without_watching_then_watch_get_and_list(
    local_server: RunningServer, make_recording: Callable[[float], Recording], tmp_path: Path
):
    audio = tmp_path / "later.wav"
    audio.write_bytes(make_recording(20.0).wav)
    submitted = await speech_jobs(
        local_server, "submit-transcription", "--uri", audio.as_uri(), "--no-watch"
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    watched = await speech_jobs(local_server, "watch", job_id)
    assert watched.returncode == 0 and "SUCCEEDED" in watched.stdout
    got = await speech_jobs(local_server, "--json", "get", job_id)
    job = json.loads(got.stdout)
    assert job["jobId"] == job_id and job["state"] == "JOB_STATE_SUCCEEDED"
    assert job["transcription"]["segments"]
    listed = await speech_jobs(local_server, "list", "--state", "succeeded")
    assert job_id in listed.stdout


async def test_bulk_synthesis_from_a_text_file(local_server: RunningServer, tmp_path: Path):
    texts = tmp_path / "questions.txt"
    texts.write_text("What motivates you?\n\nHow do you handle feedback?\n")
    out_dir = tmp_path / "audio"
    done = await speech_jobs(
        local_server, "submit-synthesis", str(texts), "--voice", "en_US-joe-medium",
        "--out-dir", str(out_dir),
    )
    assert done.returncode == 0, done.stderr
    assert "2 of 2 texts synthesized" in done.stdout
    files = sorted(out_dir.iterdir())
    assert [f.name for f in files] == ["00000.wav", "00001.wav"]
    assert all(f.read_bytes()[:4] == b"RIFF" for f in files)


async def test_refusals_exit_2_with_the_server_message(local_server: RunningServer):
    unknown = await speech_jobs(local_server, "cancel", "no-such-job")
    assert unknown.returncode == 2
    assert "NOT_FOUND" in unknown.stderr and "no-such-job" in unknown.stderr
    bad_uri = await speech_jobs(
        local_server, "submit-transcription", "--uri", "https://example.com/a.wav"
    )
    assert bad_uri.returncode == 2 and "INVALID_ARGUMENT" in bad_uri.stderr
