"""Measures the voice-agent features: StreamingSynthesizeText's time to first audio, and what
word timings cost.

    python -m tools.measure.tts_voice_agent [--streams 12] [--rounds 3] [--json out.json]

Time to first audio (TTFA): the real server in this process on loopback; one client streams
an interviewer's answer as an LLM would (1-4 words every 30-80 ms, seeded), one stream at a
time, and TTFA is from sending the piece that completes the first sentence to receiving the
first audio bytes (the server cuts a sentence once text follows its end, so this includes
waiting for the next piece, 30-80 ms). One stream per engine warms up first.

Word timings: (a) the work they add, timed alone: the SentenceTimer over sentences the engine
rendered (the durations come out of the graph either way), against the render time of the
same sentences; (b) whole Synthesizer calls (no gRPC) with and without timings, interleaved
over ``--rounds`` rounds, the order alternating from round to round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import time
from typing import Any

import grpc

#: An interviewer's turns: each streamed as one answer.
ANSWERS = [
    "Thanks for joining us today. Let us start with your background. What did you work on "
    "most recently, and what was your role?",
    "That sounds interesting. How large was the team? Who made the technical decisions?",
    "Tell me about a time a release went wrong. What did you learn from it?",
    "Great. Next, I would like to talk about system design. How would you build a service "
    "that shortens long links?",
]
VOICES = {"piper": "en_US-joe-medium", "kokoro": "af_heart"}


def llm_pieces(text: str, seed: int) -> list[tuple[float, str]]:
    rng = random.Random(seed)
    tokens = re.findall(r"\S+\s*", text)
    pieces = []
    while tokens:
        take = rng.randint(1, 4)
        pieces.append((rng.uniform(0.03, 0.08), "".join(tokens[:take])))
        tokens = tokens[take:]
    return pieces


async def one_stream(stub: Any, voice: str, text: str, seed: int) -> dict[str, float]:
    from speech.v1 import tts_pb2

    call = stub.StreamingSynthesizeText(timeout=120)
    first_sentence_sent: list[float] = []
    last_sent: list[float] = []

    async def send() -> None:
        await call.write(
            tts_pb2.StreamingSynthesizeTextRequest(config=tts_pb2.TextStreamConfig(voice=voice))
        )
        sent = ""
        for delay, piece in llm_pieces(text, seed):
            await asyncio.sleep(delay)
            await call.write(tts_pb2.StreamingSynthesizeTextRequest(text=piece))
            sent += piece
            now = time.perf_counter()
            last_sent[:] = [now]
            if not first_sentence_sent and re.search(r"[.?!](\s|$)", sent):
                first_sentence_sent.append(now)
        await call.done_writing()

    sender = asyncio.create_task(send())
    first_audio = None
    while (response := await call.read()) is not grpc.aio.EOF:
        if first_audio is None and response.chunk.audio:
            first_audio = time.perf_counter()
    await sender
    assert first_audio is not None and first_sentence_sent
    return {
        "ttfa_s": first_audio - first_sentence_sent[0],
        "audio_before_text_end_s": last_sent[0] - first_audio,
    }


async def measure_ttfa(streams: int) -> dict[str, Any]:
    from speech.v1 import tts_pb2_grpc
    from speech_platform.config import load_settings
    from speech_server.server import SpeechServer

    settings = load_settings()
    settings.server.host, settings.server.port, settings.server.metrics_port = "127.0.0.1", 0, 0
    settings.server.services = ["tts"]
    server = SpeechServer(settings, [])
    await server.start()
    results: dict[str, Any] = {}
    try:
        await server.wait_ready(600)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = tts_pb2_grpc.TextToSpeechStub(channel)
            for engine, voice in VOICES.items():
                await one_stream(stub, voice, ANSWERS[0], seed=999)  # warm-up
                samples = [
                    await one_stream(stub, voice, ANSWERS[i % len(ANSWERS)], seed=i)
                    for i in range(streams)
                ]
                ttfa = sorted(s["ttfa_s"] for s in samples)
                results[engine] = {
                    "streams": streams,
                    "ttfa_p50_ms": 1000 * statistics.median(ttfa),
                    "ttfa_p95_ms": 1000 * ttfa[min(len(ttfa) - 1, round(0.95 * (len(ttfa) - 1)))],
                    "ttfa_max_ms": 1000 * ttfa[-1],
                    "first_audio_before_last_piece": sum(
                        s["audio_before_text_end_s"] > 0 for s in samples
                    ),
                }
    finally:
        await server.stop(grace_s=2.0)
    return results


async def measure_timing_cost(rounds: int) -> dict[str, Any]:
    from speech_platform.config import load_settings
    from tools.measure.tts import TEXTS
    from tts_service.kokoro_engine import KokoroEngine
    from tts_service.piper_engine import PiperEngine
    from tts_service.results import SynthesisRequest
    from tts_service.synthesizer import Synthesizer
    from tts_service.text import normalize_aligned, split_sentences
    from tts_service.timings import SentenceTimer

    settings = load_settings()
    engines = [
        PiperEngine(settings.tts, settings.model_dir),
        KokoroEngine(settings.tts, settings.model_dir),
    ]
    synthesizer = Synthesizer(settings.tts, engines)
    await synthesizer.start()
    results: dict[str, Any] = {}
    try:
        for engine in engines:
            voice = synthesizer.catalog.get(VOICES[engine.name])
            assert voice is not None
            run = engine.build_instance(0)
            render_s = timer_s = 0.0
            sentences = 0
            for text in TEXTS:
                aligned = normalize_aligned(text)
                said = split_sentences(aligned.text)
                items = [engine.prepare(s, voice, 1.0) for s in said]
                started = time.perf_counter()
                rendered = run(items)
                render_s += time.perf_counter() - started
                started = time.perf_counter()
                timer = SentenceTimer(aligned, text, engine.sample_rate)
                for item, out in zip(items, rendered, strict=True):
                    assert not isinstance(out, BaseException)
                    timer.next(item.sentence, out.audio.size, out.words)
                timer_s += time.perf_counter() - started
                sentences += len(items)
            wall = {False: 0.0, True: 0.0}
            for round_number in range(rounds):
                order = (False, True) if round_number % 2 == 0 else (True, False)
                for timed in order:
                    for text in TEXTS:
                        request = SynthesisRequest(
                            text=text, voice=voice.name, encoding=2, enable_word_timings=timed
                        )
                        started = time.perf_counter()
                        await synthesizer.synthesize(request)
                        wall[timed] += time.perf_counter() - started
            results[engine.name] = {
                "sentences": sentences,
                "timer_us_per_sentence": 1e6 * timer_s / sentences,
                "timer_share_of_render": timer_s / render_s,
                "synthesize_s_without": wall[False],
                "synthesize_s_with": wall[True],
                "with_over_without": wall[True] / wall[False],
            }
    finally:
        await synthesizer.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="")
    parser.add_argument("--skip-ttfa", action="store_true", help="word timings only")
    parser.add_argument("--skip-timings", action="store_true", help="time to first audio only")
    args = parser.parse_args()
    report = {
        "ttfa": {} if args.skip_ttfa else asyncio.run(measure_ttfa(args.streams)),
        "word_timings": {} if args.skip_timings else asyncio.run(measure_timing_cost(args.rounds)),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
