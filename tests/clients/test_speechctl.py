"""``speechctl`` and the SDK under it, against the real server: each command, the retry that
waits as long as the server's RetryInfo asks, and deadlines."""

from __future__ import annotations

import json
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from speech.v1 import common_pb2, stt_pb2
from speech_client import ConnectOptions, RetryPolicy, SpeechClient
from speech_client.audio import Pcm, paced_chunks, read_pcm
from speech_client.formats import timed_segments
from speech_client.retry import Retry
from tests.clients.conftest import HELD_TOKEN, SPEECH_TEXT, TOKEN, has_words
from tests.clients.held_stream import held_stream
from tests.clients.speechctl import SPEECHCTL, speechctl
from tests.conftest import Clip
from tests.support.server import ServerProcess

#: The server's RetryInfo for a full stream slot (stt_service/streaming/rpc.py).
SERVER_RETRY_S = 1.0


def linear16_config(pcm: Pcm) -> stt_pb2.StreamingRecognitionConfig:
    return stt_pb2.StreamingRecognitionConfig(config=stt_pb2.RecognitionConfig(
        encoding=common_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=pcm.sample_rate))


def test_transcribe_prints_text_and_json(client_server: ServerProcess, clip: Clip) -> None:
    text = speechctl(client_server, "transcribe", str(clip.path))
    assert text.returncode == 0, text.stderr
    assert has_words(text.stdout) and len(text.stdout.strip().splitlines()) == 1

    as_json = speechctl(client_server, "transcribe", "--format", "json", "--word-times",
                        str(clip.path))
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert has_words(result["text"]) and result["model"] == "tiny.en"
    words = [w["word"].strip().lower().strip(",.") for w in result["words"]]
    assert "amiable" in words
    assert 5.0 < result["audio_duration_seconds"] < 7.0

    for subtitle, first_line, separator in (("srt", "1", ","), ("vtt", "WEBVTT", ".")):
        cues = speechctl(client_server, "transcribe", "--format", subtitle, str(clip.path))
        assert cues.returncode == 0, cues.stderr
        lines = cues.stdout.splitlines()
        assert lines[0] == first_line
        timing = next(line for line in lines if " --> " in line)
        assert timing.startswith(f"00:00:00{separator}"), timing
        assert has_words(cues.stdout)


def test_the_sdk_gives_timed_segments_for_subtitles(
    client_server: ServerProcess, clip: Clip
) -> None:
    options = ConnectOptions(target=client_server.address, token=TOKEN)
    with SpeechClient(options) as client:
        response = client.transcribe(clip.path.read_bytes())
    cues = timed_segments(response)
    assert cues and has_words(" ".join(text for _, _, text in cues))
    assert all(0 <= start < end <= response.audio_duration_seconds + 0.5
               for start, end, _ in cues)
    assert [start for start, _, _ in cues] == sorted(start for start, _, _ in cues)


def test_say_writes_speech_that_transcribes_back(
    client_server: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "question.wav"
    said = speechctl(client_server, "say", SPEECH_TEXT, "-o", str(out))
    assert said.returncode == 0, said.stderr
    assert f"wrote {out}" in said.stderr
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        seconds = wav.getnframes() / wav.getframerate()
    assert 1.5 < seconds < 0.2 * len(SPEECH_TEXT)
    # The audio is the text: speech recognition hears it back.
    heard = speechctl(client_server, "transcribe", str(out))
    assert heard.returncode == 0, heard.stderr
    # (Piper samples its prosody, so "proud of" is not always heard the same way.)
    assert has_words(heard.stdout, ("tell", "about", "project", "learn"))


def test_stream_sends_at_real_time_and_prints_interims_and_finals(
    client_server: ServerProcess, clip: Clip
) -> None:
    duration = read_pcm(clip.path).seconds
    started = time.monotonic()
    streamed = speechctl(client_server, "stream", "--mic-file", str(clip.path))
    elapsed = time.monotonic() - started
    assert streamed.returncode == 0, streamed.stderr
    lines = streamed.stdout.splitlines()
    finals = [line.removeprefix("[final] ") for line in lines if line.startswith("[final] ")]
    assert any(line.startswith("[interim] ") for line in lines)
    assert finals and has_words(" ".join(finals))
    assert elapsed >= duration  # paced like a microphone, not sent at once


def test_stream_retries_after_the_delay_the_servers_retry_info_asks(
    client_server: ServerProcess, clip: Clip
) -> None:
    with held_stream(client_server, HELD_TOKEN) as held:
        command = [SPEECHCTL, "--target", client_server.address, "--token", HELD_TOKEN,
                   "--retries", "3", "stream", "--mic-file", str(clip.path), "--json",
                   "--speed", "3"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            assert process.stderr is not None
            refused = process.stderr.readline()  # blocks until the first refusal is told
            held.release()
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert "RESOURCE_EXHAUSTED" in refused and "stt.max_streams_per_caller" in refused
    assert f"retrying in {SERVER_RETRY_S:.2f} s as the server asked" in refused
    assert process.returncode == 0, stderr
    results = [json.loads(line) for line in stdout.splitlines()]
    assert has_words(" ".join(r["text"] for r in results if r["is_final"]))


def test_a_refusal_that_outlasts_the_retries_fails_with_the_servers_message(
    client_server: ServerProcess, clip: Clip
) -> None:
    with held_stream(client_server, HELD_TOKEN):
        started = time.monotonic()
        failed = speechctl(client_server, "--retries", "1", "stream", "--mic-file",
                           str(clip.path), token=HELD_TOKEN)
        elapsed = time.monotonic() - started
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("speechctl: RESOURCE_EXHAUSTED: ") and "max_streams_per_caller" in last
    assert elapsed >= SERVER_RETRY_S  # it waited as asked before its one retry


def test_the_sdk_waits_the_servers_delay_not_its_own_backoff(
    client_server: ServerProcess, clip: Clip
) -> None:
    pcm = read_pcm(clip.path)
    config = linear16_config(pcm)
    attempts: list[float] = []
    retries: list[tuple[float, Retry]] = []

    def microphone() -> Iterator[bytes]:
        attempts.append(time.monotonic())
        return paced_chunks(pcm, speed=0)

    with held_stream(client_server, HELD_TOKEN) as held:
        def on_retry(retry: Retry) -> None:
            retries.append((time.monotonic(), retry))
            held.release()  # the slot is free by the time the client comes back

        options = ConnectOptions(target=client_server.address, token=HELD_TOKEN)
        policy = RetryPolicy(max_attempts=3, base_delay_s=0.05)
        with SpeechClient(options, retry=policy, on_retry=on_retry) as client:
            results = list(client.stream_transcribe(config, microphone))

    # gRPC reads the request iterator lazily: a refusal may come before attempt 1 opened the
    # audio, so the last opening is the retry's.
    assert len(retries) == 1 and len(attempts) in (1, 2)
    told_at, retry = retries[0]
    assert retry.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry.from_server and retry.delay_s == pytest.approx(SERVER_RETRY_S)
    assert attempts[-1] - told_at >= SERVER_RETRY_S
    assert has_words(" ".join(r.text for r in results if r.is_final))


def test_no_retry_is_made_that_the_deadline_cannot_wait_for(
    client_server: ServerProcess, clip: Clip
) -> None:
    pcm = read_pcm(clip.path)
    config = linear16_config(pcm)
    retries: list[Retry] = []
    options = ConnectOptions(target=client_server.address, token=HELD_TOKEN)
    with held_stream(client_server, HELD_TOKEN), SpeechClient(
        options, timeout_s=0.5, on_retry=retries.append
    ) as client, pytest.raises(grpc.RpcError) as refused:
        list(client.stream_transcribe(config, lambda: paced_chunks(pcm)))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retries == []


def test_timeout_ends_a_stream_that_takes_longer(client_server: ServerProcess, clip: Clip) -> None:
    late = speechctl(client_server, "--timeout", "1", "stream", "--mic-file", str(clip.path))
    assert late.returncode == 1
    assert late.stderr.startswith("speechctl: DEADLINE_EXCEEDED")


def test_bad_usage_is_told_plainly(client_server: ServerProcess, tmp_path: Path) -> None:
    missing = speechctl(client_server, "transcribe", str(tmp_path / "none.wav"))
    assert missing.returncode == 2 and "none.wav" in missing.stderr
    half_tls = speechctl(client_server, "--cert", str(tmp_path / "c.pem"), "transcribe", "x")
    assert half_tls.returncode == 2 and "--key" in half_tls.stderr
    raw = tmp_path / "audio.raw"
    raw.write_bytes(bytes(3200))
    unknown_rate = speechctl(client_server, "stream", "--mic-file", str(raw))
    assert unknown_rate.returncode == 2 and "--sample-rate" in unknown_rate.stderr
