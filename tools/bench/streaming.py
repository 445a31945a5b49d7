"""Streaming recognition load: clients stream recordings at real-time pace.

Each client opens StreamingTranscribe, sends 100 ms LINEAR16 chunks paced as a microphone
would, half-closes, and reads until the server ends the stream; then it starts the next
recording, for a fixed number of rounds (a time window would cut real-time streams short).
Measured per stream: time to the first result, and the final latency from the end of the
audio (the half-close) to the end of the stream, which is when the last final result has
arrived. One stream before the measurement warms the server up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from tools.bench.stats import LatencySummary, corpus_wer
from tools.bench.workload import SAMPLE_RATE, Clip, recorded_clips

CHUNK_S = 0.1


@dataclass
class StreamRecord:
    finished: float
    first_result_s: float | None
    final_latency_s: float
    interim: int
    text: str
    reference: str
    audio_s: float
    code: str


def _config() -> stt_pb2.StreamingTranscribeRequest:
    return stt_pb2.StreamingTranscribeRequest(
        streaming_config=stt_pb2.StreamingRecognitionConfig(
            config=stt_pb2.RecognitionConfig(
                encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=SAMPLE_RATE,
                language_code="en",
            ),
            interim_results=True,
        )
    )


async def _one_stream(stub: stt_pb2_grpc.SpeechToTextStub, clip: Clip) -> StreamRecord:
    loop = asyncio.get_running_loop()
    chunk = int(CHUNK_S * SAMPLE_RATE)
    data = clip.pcm.astype("<i2")
    audio_done: list[float] = []

    async def requests() -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
        yield _config()
        started = loop.time()
        for index, offset in enumerate(range(0, len(data), chunk)):
            # Real-time pacing is the workload itself (a microphone), not synchronisation.
            delay = started + index * CHUNK_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield stt_pb2.StreamingTranscribeRequest(
                audio_content=data[offset : offset + chunk].tobytes()
            )
        audio_done.append(loop.time())

    opened = loop.time()
    first: float | None = None
    interim = 0
    finals: list[str] = []
    code = "OK"
    try:
        async for response in stub.StreamingTranscribe(requests(), timeout=clip.duration_s + 120):
            if first is None:
                first = loop.time() - opened
            if response.is_final:
                finals.append(response.text.strip())
            else:
                interim += 1
    except grpc.aio.AioRpcError as error:
        code = error.code().name
    ended = loop.time()
    final_latency = ended - (audio_done[0] if audio_done else ended)
    return StreamRecord(ended, first, final_latency, interim, " ".join(f for f in finals if f),
                        clip.reference, clip.duration_s, code)


async def _measure(address: str, concurrency: int, rounds: int) -> dict[str, Any]:
    clips = recorded_clips()
    records: list[StreamRecord] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        probe = await _one_stream(stub, clips[-1])
        if probe.code == "UNIMPLEMENTED":
            return {"concurrency": concurrency, "unimplemented": True}
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def client(index: int) -> None:
            for turn in range(rounds):
                records.append(await _one_stream(stub, clips[(index + turn) % len(clips)]))

        await asyncio.gather(*(client(i) for i in range(concurrency)))
        elapsed = loop.time() - start
    ok = [r for r in records if r.code == "OK"]
    codes: dict[str, int] = {}
    for record in records:
        codes[record.code] = codes.get(record.code, 0) + 1
    return {
        "concurrency": concurrency,
        "window_s": round(elapsed, 3),
        "rounds": rounds,
        "streams": len(ok),
        "requests": len(ok),
        "codes": codes,
        "rps": len(ok) / elapsed,
        "audio_s_per_s": sum(r.audio_s for r in ok) / elapsed,
        "latency": LatencySummary.of([r.final_latency_s for r in ok]).as_dict(),
        "first_result": LatencySummary.of(
            [r.first_result_s for r in ok if r.first_result_s is not None]
        ).as_dict(),
        "interim_per_stream": (sum(r.interim for r in ok) / len(ok)) if ok else None,
        "wer": corpus_wer([(r.reference, r.text) for r in ok]) if ok else None,
        "latency_means": "end of audio (half-close) to the end of the stream",
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def measure(address: str, concurrency: int, rounds: int) -> dict[str, Any]:
    """``rounds`` recordings per client, ``concurrency`` clients at once."""
    started = time.perf_counter()
    summary = asyncio.run(_measure(address, concurrency, rounds))
    summary["elapsed_s"] = round(time.perf_counter() - started, 2)
    return summary
