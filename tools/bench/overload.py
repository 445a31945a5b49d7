"""A thousand callers at once, and a flood beside a polite caller: who is served, who is
told at once, and what it costs.

    python -m tools.bench overload [--mode burst|flood|both] [--clients 1000]
        [--deadline-s 30] [--json out.json]

One ``speech-server`` with the defaults of ``make run`` (STT and TTS, cache bypassed by
``skip_cache`` so every call computes) on loopback. First its capacity is measured: 16
closed-loop clients, half Transcribe of a 2.8 s command, half Synthesize of one sentence,
for ``--capacity-s``. Then ``--clients`` callers, the same half and half, each send one call
at the same moment with a ``--deadline-s`` deadline. Reported: the answers by status code;
goodput (calls served within their deadline) against what the measured capacity serves in a
deadline; how fast refusals came (p50, p95, max); the p95 of served calls; the slowest
health check answered during the burst; peak RSS, and RSS at idle before and 30 s after;
the refusals by model and reason (the server's own counters). Each figure is also given per
caller class (Transcribe, Synthesize).

The flood (``--mode flood``): one caller keeps ``--flooders`` long Synthesize calls in
flight (a new one as each ends, refused or not) while a polite caller, with a token of its
own, sends one short sentence a second. Reported: the polite caller's p50/p95 alone and
under the flood, and the ratio, and what the flooder got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech.v1 import common_pb2, stt_pb2, tts_pb2
from tools.bench import procs, prom
from tools.bench.workload import all_recordings

SENTENCE = "Tell me about a project you are proud of."
TRANSCRIBE = "/speech.v1.SpeechToText/Transcribe"
SYNTHESIZE = "/speech.v1.TextToSpeech/Synthesize"
#: Client connections the burst's callers are spread over.
CONNECTIONS = 50


def _requests() -> dict[str, bytes]:
    command = all_recordings()["goforward"]
    transcribe = stt_pb2.TranscribeRequest(
        audio=command.pcm.astype("<i2").tobytes(),
        config=stt_pb2.RecognitionConfig(
            encoding=common_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000, skip_cache=True
        ),
    )
    synthesize = tts_pb2.SynthesizeRequest(text=SENTENCE, skip_cache=True)
    return {TRANSCRIBE: transcribe.SerializeToString(), SYNTHESIZE: synthesize.SerializeToString()}


async def _call(
    channel: grpc.aio.Channel, method: str, body: bytes, deadline_s: float
) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        await channel.unary_unary(method)(body, timeout=deadline_s)
        code = "OK"
    except grpc.aio.AioRpcError as error:
        code = error.code().name
    return code, time.perf_counter() - started


async def _capacity(address: str, bodies: dict[str, bytes], seconds: float) -> float:
    """Calls per second 16 closed-loop clients get, half of each kind."""
    served = 0
    stop = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(address) as channel:

        async def client(method: str) -> None:
            nonlocal served
            while time.perf_counter() < stop:
                code, _ = await _call(channel, method, bodies[method], 120.0)
                served += code == "OK"

        started = time.perf_counter()
        await asyncio.gather(*(client(m) for m in list(bodies) * 8))
        return served / (time.perf_counter() - started)


async def _burst(
    address: str, bodies: dict[str, bytes], clients: int, deadline_s: float
) -> dict[str, Any]:
    health_worst = 0.0
    # Callers on connections of their own, as many clients would be (one HTTP/2
    # connection for all would queue every refusal behind every upload).
    channels = [grpc.aio.insecure_channel(address) for _ in range(CONNECTIONS)]
    try:
        health = health_pb2_grpc.HealthStub(channels[0])
        methods = [list(bodies)[i % 2] for i in range(clients)]
        calls = [
            asyncio.ensure_future(_call(channels[i % CONNECTIONS], m, bodies[m], deadline_s))
            for i, m in enumerate(methods)
        ]
        while not all(c.done() for c in calls):
            started = time.perf_counter()
            await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=deadline_s)
            health_worst = max(health_worst, time.perf_counter() - started)
            await asyncio.sleep(0.25)  # a health prober's pace, not synchronisation
        outcomes = [c.result() for c in calls]
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    by_method = {
        m.rsplit("/", 1)[-1]: _outcome_stats(
            [o for o, mm in zip(outcomes, methods, strict=True) if mm == m]
        )
        for m in bodies
    }
    return {
        **_outcome_stats(outcomes),
        "by_method": by_method,
        "health_worst_s": round(health_worst, 3),
        "refusals_within_1s_count": sum(
            1 for code, s in outcomes if code == "RESOURCE_EXHAUSTED" and s <= 1.0
        ),
    }


def _outcome_stats(outcomes: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "codes": dict(Counter(code for code, _ in outcomes)),
        "refusal_s": _quantiles([s for code, s in outcomes if code == "RESOURCE_EXHAUSTED"]),
        "served_s": _quantiles([s for code, s in outcomes if code == "OK"]),
    }


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p95": round(float(np.percentile(array, 95)), 3),
        "max": round(float(array.max()), 3),
    }


def run(clients: int, deadline_s: float, capacity_s: float) -> dict[str, Any]:
    bodies = _requests()
    log_dir = Path(tempfile.mkdtemp(prefix="speech-overload-"))
    with procs.speech_server("overload", {}, log_dir, services=["stt", "tts"]) as server:
        server.start()
        idle_before = server.rss_mb()
        capacity = asyncio.run(_capacity(server.address, bodies, capacity_s))
        before = _refusal_counts(server.metrics_port)
        burst = asyncio.run(_burst(server.address, bodies, clients, deadline_s))
        peak = server.record_peak_rss()
        refused_by = _minus(_refusal_counts(server.metrics_port), before)
        time.sleep(30)  # RSS 30 s after the burst, as the issue asks (measurement, not sync)
        after = server.rss_mb()
    served = burst["codes"].get("OK", 0)
    failures = clients - served
    fast = burst["refusal_s"]
    within_1s = burst.pop("refusals_within_1s_count")
    return {
        "clients": clients,
        "deadline_s": deadline_s,
        "capacity_calls_per_s": round(capacity, 2),
        "goodput_vs_capacity": round(served / (capacity * deadline_s), 3) if capacity else None,
        "refusals_share_of_failures": (
            round(burst["codes"].get("RESOURCE_EXHAUSTED", 0) / failures, 3) if failures else None
        ),
        **burst,
        "refusals_within_1s": bool(fast and fast["max"] <= 1.0),
        # The reading: ">= 95 % of failures are refusals answered within 1 s".
        "fast_refusals_share_of_failures": round(within_1s / failures, 3) if failures else None,
        "refused_by": refused_by,
        "rss_mb": {"idle_before": idle_before, "peak": peak, "30s_after": after},
        "server_log": str(server.log_path),
    }


def _refusal_counts(metrics_port: int | None) -> dict[str, float]:
    """Refusals so far, by "model/reason" (batchers) and "server/reason" (server limits)."""
    if not metrics_port:
        return {}
    text = prom.scrape(metrics_port)
    counts = prom.counters(text, "speech_batcher_rejections_total", "model", "reason")
    for reason, value in prom.counters(text, "speech_refusals_total", "reason").items():
        counts[f"server/{reason}"] = value
    return counts


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {
        key: round(value - before.get(key, 0.0))
        for key, value in sorted(after.items())
        if value - before.get(key, 0.0) > 0
    }


FLOOD_TEXT = (
    "Our quarterly review found that the platform handled twice the expected traffic, "
    "with no outage and a small rise in latency during the evening peak. "
) * 10
TOKENS = {"flooder": "flood-token", "polite": "polite-token"}


async def _polite(address: str, seconds: float) -> list[tuple[str, float]]:
    """One short sentence a second from the polite caller's own token."""
    body = tts_pb2.SynthesizeRequest(text=SENTENCE, skip_cache=True).SerializeToString()
    metadata = (("authorization", f"Bearer {TOKENS['polite']}"),)
    outcomes = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(SYNTHESIZE)
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                await call(body, timeout=30.0, metadata=metadata)
                outcomes.append(("OK", time.perf_counter() - started))
            except grpc.aio.AioRpcError as error:
                outcomes.append((error.code().name, time.perf_counter() - started))
            await asyncio.sleep(max(1.0 - (time.perf_counter() - started), 0.0))  # the pace
    return outcomes


def _retry_delay(error: grpc.aio.AioRpcError, hostile: bool) -> float:
    """How long a flooder waits after a refusal: the server's retry-after-ms (a greedy but
    well-behaved client, as SDKs do), or 0.2 s whatever it says (``hostile``)."""
    if hostile:
        return 0.2
    trailing = dict(error.trailing_metadata() or ())
    value = trailing.get("retry-after-ms")
    return int(value) / 1000.0 if isinstance(value, str) and value.isdigit() else 1.0


async def _flood(
    address: str, flooders: int, seconds: float, hostile: bool = False
) -> dict[str, Any]:
    body = tts_pb2.SynthesizeRequest(text=FLOOD_TEXT, skip_cache=True).SerializeToString()
    metadata = (("authorization", f"Bearer {TOKENS['flooder']}"),)
    codes: Counter[str] = Counter()
    stop = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(SYNTHESIZE)

        async def flooder() -> None:
            while time.perf_counter() < stop:
                try:
                    await call(body, timeout=60.0, metadata=metadata)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] += 1
                    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        await asyncio.sleep(_retry_delay(error, hostile))  # the workload

        async def flood_and_polite() -> list[tuple[str, float]]:
            await asyncio.sleep(5.0)  # let the flood fill the queues first (workload shape)
            return await _polite(address, seconds - 10.0)

        flood = [asyncio.ensure_future(flooder()) for _ in range(flooders)]
        polite = await flood_and_polite()
        await asyncio.gather(*flood)
    return {"flooder_codes": dict(codes), "polite": _outcome_stats(polite)}


def run_flood(flooders: int, seconds: float, hostile: bool = False) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="speech-flood-"))
    config = {"server": {"auth_tokens": list(TOKENS.values())}}
    with procs.speech_server("flood", config, log_dir, services=["tts"]) as server:
        server.start()
        alone = asyncio.run(_polite(server.address, 15.0))
        before = _refusal_counts(server.metrics_port)
        flood = asyncio.run(_flood(server.address, flooders, seconds, hostile))
        peak = server.record_peak_rss()
        refused_by = _minus(_refusal_counts(server.metrics_port), before)
    unloaded = _outcome_stats(alone)["served_s"]
    loaded = flood["polite"]["served_s"]
    return {
        "flooders": flooders,
        "flooder_retries": "every 0.2 s" if hostile else "after the server's retry delay",
        "flood_text_chars": len(FLOOD_TEXT),
        "polite_alone": _outcome_stats(alone),
        **flood,
        "polite_p95_ratio": (
            round(loaded["p95"] / unloaded["p95"], 2) if loaded and unloaded else None
        ),
        "refused_by": refused_by,
        "rss_peak_mb": peak,
        "server_log": str(server.log_path),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=["burst", "flood", "both", "hostile", "all"], default="both",
        help="both = burst and flood; hostile = each hostile input (tools/bench/hostile.py)",
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--deadline-s", type=float, default=30.0)
    parser.add_argument("--capacity-s", type=float, default=15.0)
    parser.add_argument("--flooders", type=int, default=200)
    parser.add_argument("--flood-s", type=float, default=40.0)
    parser.add_argument("--hostile", action="store_true",
                        help="flooders retry every 0.2 s whatever the server's retry delay")
    parser.add_argument("--json", type=Path)


def command(args: argparse.Namespace) -> int:
    if not 1 <= args.clients <= 5000:
        raise SystemExit("--clients must lie in 1..5000")
    report: dict[str, Any] = {}
    if args.mode in ("burst", "both", "all"):
        report["burst"] = run(args.clients, args.deadline_s, args.capacity_s)
    if args.mode in ("flood", "both", "all"):
        report["flood"] = run_flood(args.flooders, args.flood_s, args.hostile)
    if args.mode in ("hostile", "all"):
        from tools.bench import hostile

        report["hostile"] = hostile.run()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    raise SystemExit(command(parser.parse_args()))


if __name__ == "__main__":
    main()
