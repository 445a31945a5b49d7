"""How many live streams this machine serves in real time, judged by final latency.

    python -m tools.bench.streaming_capacity [--levels 1,2,4,8,12,16]
        [--seconds 40] [--threshold-s 2.0] [--json out.json] [--set stt.instances=2 ...]
        [--target HOST:PORT]

At each level N, N clients stream LibriVox sentences joined with 1 s pauses, as 100 ms
LINEAR16 chunks paced like a microphone, for ``--seconds`` of audio each. The clients start
at staggered moments and at different sentences, as real callers do (in-phase callers would
all end their sentences together, which no real load does).

The figure is the latency a speaker feels: from the end of a sentence's speech (found
offline in each recording by the Silero VAD; the chunk holding it is when the client sent
it) to the arrival of that sentence's final. It includes the
endpoint silence the server must hear before it can know the sentence is over
(``stt.default_endpoint_silence_ms``, 600 ms by default). The server's own share, from the
endpoint to the final being sent (``speech_stt_stream_final_latency_seconds``), is
reported next to it. The capacity is the largest N whose p95 stays within
``--threshold-s``; levels stop after the first one past it.

The server runs as a subprocess with the given settings (``--set`` takes dotted keys), so
the client's own CPU use is the only thing besides the server on the machine; on a shared
machine, compare figures only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import yaml

from speech.v1 import common_pb2, stt_pb2, stt_pb2_grpc
from tools.bench import procs, prom
from tools.bench.stats import LatencySummary, corpus_wer
from tools.bench.workload import SAMPLE_RATE, Clip, recorded_clips

CHUNK_S = 0.1
PAUSE_S = 1.0
LEAD_S = 0.5


@dataclass(frozen=True)
class Script:
    """What one client says: sentences with pauses, and where each sentence's speech ends."""

    pcm: np.ndarray
    references: tuple[str, ...]
    #: (start of the clip, end of its speech) in stream seconds.
    spans: tuple[tuple[float, float], ...]


_SPEECH_ENDS: dict[str, float] = {}


def speech_end_s(clip: Clip) -> float:
    """Where the speech in a clip ends (recordings trail off in 0.2-0.3 s of room noise),
    found offline by faster-whisper's Silero VAD with no padding."""
    if clip.name not in _SPEECH_ENDS:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        samples = clip.pcm.astype(np.float32) / 32768.0
        found = get_speech_timestamps(samples, VadOptions(speech_pad_ms=0))
        _SPEECH_ENDS[clip.name] = found[-1]["end"] / SAMPLE_RATE if found else clip.duration_s
    return _SPEECH_ENDS[clip.name]


def script(clips: Sequence[Clip], first: int, seconds: float) -> Script:
    pieces = [np.zeros(int(LEAD_S * SAMPLE_RATE), np.int16)]
    position = LEAD_S
    references, spans = [], []
    index = first
    while position < seconds:
        clip = clips[index % len(clips)]
        index += 1
        spans.append((position, position + speech_end_s(clip)))
        references.append(clip.reference)
        pieces += [clip.pcm, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.int16)]
        position += clip.duration_s + PAUSE_S
    return Script(np.concatenate(pieces), tuple(references), tuple(spans))


@dataclass
class StreamOutcome:
    #: Seconds from each sentence's end of audio to its final (None: no final came).
    latencies: list[float | None] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    interims: int = 0
    code: str = "OK"


def _config() -> stt_pb2.StreamingTranscribeRequest:
    return stt_pb2.StreamingTranscribeRequest(
        streaming_config=stt_pb2.StreamingRecognitionConfig(
            config=stt_pb2.RecognitionConfig(
                encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=SAMPLE_RATE,
                language_code="en",
                enable_word_time_offsets=True,
            ),
            interim_results=True,
        )
    )


async def run_stream(
    stub: stt_pb2_grpc.SpeechToTextStub, plan: Script, start_after_s: float
) -> StreamOutcome:
    loop = asyncio.get_running_loop()
    # A caller arriving later; the pacing below is the microphone itself (the workload).
    await asyncio.sleep(start_after_s)
    data = plan.pcm.astype("<i2").tobytes()
    chunk = int(CHUNK_S * SAMPLE_RATE) * 2
    started: list[float] = []

    async def requests() -> AsyncIterator[stt_pb2.StreamingTranscribeRequest]:
        yield _config()
        started.append(loop.time())
        for offset in range(0, len(data), chunk):
            due = started[0] + (offset + chunk) / 2 / SAMPLE_RATE
            await asyncio.sleep(max(0.0, due - loop.time()))
            yield stt_pb2.StreamingTranscribeRequest(audio_content=data[offset : offset + chunk])

    finals: list[tuple[stt_pb2.StreamingTranscribeResponse, float]] = []
    outcome = StreamOutcome(references=list(plan.references))
    try:
        async for response in stub.StreamingTranscribe(requests()):
            if response.is_final:
                finals.append((response, loop.time()))
            else:
                outcome.interims += 1
    except grpc.aio.AioRpcError as error:
        outcome.code = error.code().name
    by_sentence: dict[int, list[tuple[stt_pb2.StreamingTranscribeResponse, float]]] = {}
    for response, arrived in finals:
        by_sentence.setdefault(_sentence_of(response, plan.spans), []).append((response, arrived))
    for index, (_, end_s) in enumerate(plan.spans):
        heard = by_sentence.get(index, [])
        # The end of the sentence's speech left the client with the chunk holding it.
        sent_end = started[0] + _chunk_end(end_s) if started else None
        last = heard[-1][1] if heard else None
        outcome.latencies.append(
            None if last is None or sent_end is None else max(last - sent_end, 0.0)
        )
        outcome.hypotheses.append(" ".join(r.text for r, _ in heard))
    return outcome


def _chunk_end(seconds: float) -> float:
    """When the chunk holding the audio at ``seconds`` was sent (chunks leave when full)."""
    return float(np.ceil(seconds / CHUNK_S) * CHUNK_S)


def _sentence_of(
    response: stt_pb2.StreamingTranscribeResponse, spans: Sequence[tuple[float, float]]
) -> int:
    overlaps = [
        min(end, response.end_seconds) - max(start, response.start_seconds) for start, end in spans
    ]
    return int(np.argmax(overlaps))


async def run_level(address: str, streams: int, seconds: float, seed: int) -> dict[str, Any]:
    clips = recorded_clips()[:5]  # the LibriVox sentences
    rng = random.Random(seed)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        outcomes = await asyncio.gather(
            *(
                run_stream(stub, script(clips, i, seconds), rng.uniform(0.0, 3.0))
                for i in range(streams)
            )
        )
    latencies = [x for o in outcomes for x in o.latencies]
    heard = [x for x in latencies if x is not None]
    return {
        "streams": streams,
        "sentences": len(latencies),
        "missed_finals": len(latencies) - len(heard),
        "codes": sorted({o.code for o in outcomes}),
        "final_after_speech": LatencySummary.of(heard).as_dict(),
        "interims_per_stream": sum(o.interims for o in outcomes) / streams,
        "wer": corpus_wer((" ".join(o.references), " ".join(o.hypotheses)) for o in outcomes),
    }


def _server_share(before: str, after: str) -> dict[str, Any]:
    def hist(name: str, **labels: str) -> prom.Histogram:
        return prom.histogram(after, name, **labels).minus(prom.histogram(before, name, **labels))

    final = hist("speech_stt_stream_final_latency_seconds")
    interim = hist("speech_stt_stream_interim_latency_seconds")
    batches = hist("speech_batcher_batch_size", model="whisper-tiny.en")
    return {
        "server_final_mean_ms": None if final.mean is None else round(final.mean * 1000, 1),
        "server_final_buckets": final.per_bucket(),
        "server_interim_mean_ms": None if interim.mean is None else round(interim.mean * 1000, 1),
        "mean_batch_size": None if batches.mean is None else round(batches.mean, 2),
        "batches": int(batches.count),
    }


def measure(
    address: str,
    metrics_port: int | None,
    levels: Sequence[int],
    seconds: float,
    threshold_s: float,
    seed: int,
    keep_going: bool = False,
) -> dict[str, Any]:
    results = []
    capacity = 0
    exceeded = False  # capacity counts only the levels below the first one past it
    asyncio.run(run_level(address, 1, 8.0, seed))  # warm-up: first decodes are slower
    for streams in levels:
        before = prom.scrape(metrics_port) if metrics_port else ""
        started = time.perf_counter()
        level = asyncio.run(run_level(address, streams, seconds, seed))
        level["elapsed_s"] = round(time.perf_counter() - started, 1)
        level["loadavg_1m"] = round(os.getloadavg()[0], 2)
        if metrics_port:
            level.update(_server_share(before, prom.scrape(metrics_port)))
        results.append(level)
        p95_ms = level["final_after_speech"]["p95_ms"]
        print(json.dumps(level), flush=True)
        sustained = (
            p95_ms is not None and p95_ms <= threshold_s * 1000 and not level["missed_finals"]
        )
        if not sustained:
            exceeded = True
            if not keep_going:
                break
        elif not exceeded:
            capacity = streams
    return {
        "threshold_s": threshold_s,
        "seconds_per_stream": seconds,
        "capacity_streams": capacity,
        "levels": results,
        "latency_means": "end of a sentence's speech (sent by the client) to its final",
    }


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``stt.batcher.max_batch_size=2`` -> nested settings (values parsed as YAML)."""
    config: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        node = config
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,2,4,6,8,12,16")
    parser.add_argument("--seconds", type=float, default=40.0, help="audio per stream")
    parser.add_argument("--threshold-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--set", action="append", default=[], help="server setting key=value")
    parser.add_argument("--target", help="an already running server (host:port)")
    parser.add_argument("--metrics-port", type=int, help="its /metrics port, with --target")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--keep-going", action="store_true", help="measure every level, also past the threshold"
    )
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x]
    config = {"cache": {"backend": "off"}, **_overrides(args.set)}
    if args.target:
        doc = measure(
            args.target,
            args.metrics_port,
            levels,
            args.seconds,
            args.threshold_s,
            args.seed,
            args.keep_going,
        )
    else:
        with tempfile.TemporaryDirectory() as logs:
            server = procs.speech_server("streaming-capacity", config, Path(logs), services=["stt"])
            with server.start():
                doc = measure(
                    server.address,
                    server.metrics_port,
                    levels,
                    args.seconds,
                    args.threshold_s,
                    args.seed,
                    args.keep_going,
                )
    doc["server_settings"] = config
    text = json.dumps(doc, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
