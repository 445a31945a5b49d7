"""Realtime transcription over WebSocket (OpenAI's transcription session events), with a
real WebSocket client against a real server on the StreamingRecognizer."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.http.conftest import TOKEN, http_server, http_settings
from tests.stt.media import read_raw16, to_pcm16

pytestmark = pytest.mark.slow

RATE = 24_000  # OpenAI's pcm16


@pytest_asyncio.fixture(scope="module")
async def ws_url():
    settings = http_settings(["stt"])
    settings.stt.instances = 1
    settings.stt.max_streams_per_caller = 1
    async with http_server(settings) as (_server, base_url):
        yield base_url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


@pytest.fixture(scope="module")
def speech_24k(goforward) -> np.ndarray:
    """'go forward ten meters' at 24 kHz (linear interpolation from 16 kHz)."""
    samples = read_raw16(goforward.path)
    positions = np.arange(int(len(samples) * RATE / 16_000)) * 16_000 / RATE
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def _session(url: str, **headers: str) -> Any:
    return connect(url, additional_headers={"authorization": f"Bearer {TOKEN}", **headers})


async def _next(socket: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout=60))


async def _append(socket: ClientConnection, samples: np.ndarray) -> None:
    pcm = to_pcm16(samples)
    step = RATE // 10 * 2  # 100 ms
    for start in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[start : start + step]).decode()
        await socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))


async def _until(socket: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of ``kind``."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != kind:
        seen.append(await _next(socket))
    return seen


async def test_server_vad_commits_and_transcribes(ws_url, speech_24k):
    async with _session(ws_url) as socket:
        created = await _next(socket)
        assert created["type"] == "transcription_session.created"
        await socket.send(json.dumps({
            "type": "transcription_session.update",
            "session": {"input_audio_format": "pcm16",
                        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
        }))  # fmt: skip
        updated = await _next(socket)
        assert updated["type"] == "transcription_session.updated"
        assert updated["session"]["turn_detection"]["silence_duration_ms"] == 500
        await _append(socket, np.concatenate([speech_24k, np.zeros(RATE * 2, np.float32)]))
        events = await _until(socket, "conversation.item.input_audio_transcription.completed")
    kinds = [e["type"] for e in events]
    assert kinds == [
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    item = events[0]["item_id"]
    assert all(e["item_id"] == item for e in events) and events[0]["previous_item_id"] is None
    assert "forward" in events[-1]["transcript"].lower()
    assert events[1]["delta"] == events[-1]["transcript"]


async def test_commit_ends_the_utterance_at_once(ws_url, speech_24k):
    async with _session(ws_url) as socket:
        await _next(socket)
        await _append(socket, speech_24k)  # no trailing silence: only the commit ends it
        await socket.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = await _until(socket, "conversation.item.input_audio_transcription.completed")
        assert "forward" in events[-1]["transcript"].lower()
        # The session goes on: a commit with nothing appended is refused, not fatal.
        await socket.send(json.dumps({"type": "input_audio_buffer.commit"}))
        refused = await _next(socket)
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "input_audio_buffer_commit_empty"


async def test_bad_events_get_error_events(ws_url):
    async with _session(ws_url) as socket:
        await _next(socket)
        await socket.send("not json")
        assert (await _next(socket))["error"]["code"] == "invalid_json"
        await socket.send(json.dumps({"type": "response.create", "event_id": "e1"}))
        unknown = await _next(socket)
        assert unknown["error"]["code"] == "unknown_event" and unknown["error"]["event_id"] == "e1"
        await socket.send(json.dumps({"type": "transcription_session.update",
                                      "session": {"input_audio_format": "g711_alaw"}}))  # fmt: skip
        assert "g711_alaw" in (await _next(socket))["error"]["message"]
        await socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
        assert (await _next(socket))["error"]["code"] == "invalid_audio"


async def test_a_missing_or_wrong_token_is_refused(ws_url):
    for headers in ({"authorization": ""}, {"authorization": "Bearer nope"}):
        with pytest.raises(InvalidStatus) as raised:
            async with connect(ws_url, additional_headers=headers):
                pass
        assert raised.value.response.status_code == 403
    # Browsers cannot set headers: the key may come as a subprotocol, as OpenAI's do.
    async with connect(
        ws_url, subprotocols=["realtime", f"openai-insecure-api-key.{TOKEN}"]
    ) as socket:
        assert (await _next(socket))["type"] == "transcription_session.created"
        assert socket.subprotocol == "realtime"


async def test_streams_count_against_the_callers_cap(ws_url, speech_24k):
    """A WebSocket stream takes one of its caller's stream slots, as a gRPC stream does."""
    async with _session(ws_url) as first, _session(ws_url) as second:
        await _next(first)
        await _next(second)
        await _append(first, speech_24k[: RATE // 2])
        await _append(second, speech_24k[: RATE // 2])
        # Whichever stream opened second is refused; the other has nothing to say yet.
        replies = [asyncio.ensure_future(_next(s)) for s in (first, second)]
        done, pending = await asyncio.wait(replies, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        assert len(done) == 1
        refused = done.pop().result()
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "resource_exhausted"
        assert "max_streams_per_caller" in refused["error"]["message"]
