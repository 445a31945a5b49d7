"""What ``python -m tools.bench`` measures, one function per scenario.

Each scenario starts the servers it needs (one at a time: this machine has two cores, so a
system is never measured while another runs), drives them with the load generator, and
returns one SystemResult per system plus scenario-level extras. Servers are always stopped,
also on failure; a scenario that cannot run says why instead of failing the whole run.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from tools.bench import batcher_overhead, ceiling, procs, workload
from tools.bench.loadgen import SYNTHESIZE, TRANSCRIBE, Target
from tools.bench.measure import Measured, Progress, RemoteServer, SystemResult
from tools.bench.measure import measure_levels as _measure_levels

log = logging.getLogger(__name__)

#: The STT workloads (tools/bench/workload.py): the LibriVox mix, distinct short clips, one
#: command sent by every client at once, recurring commands, 30 s conversations.
STT_SCENARIOS = ("stt", "stt-short", "stt-same", "stt-repeat", "stt-long")
SCENARIOS = ("null", *STT_SCENARIOS, "tts-piper", "tts-kokoro", "cache-hit", "streaming-stt")
BASELINES = ("naive", "plain", "ceiling", "ray")


@dataclass(frozen=True)
class Plan:
    """Concurrency levels and window lengths of one scenario."""

    levels: tuple[int, ...]
    naive_levels: tuple[int, ...] = ()
    window_s: float = 10.0
    ceiling_window_s: float = 10.0
    #: A shorter warm-up cap than the run's (--max-warmup-s), where slow baselines would
    #: otherwise spend the whole cap warming up (the STT workloads besides "stt").
    max_warmup_s: float | None = None


#: The full run: about 20-25 minutes on a quiet 2-core CPU (an estimate, not yet timed: the
#: STT workloads besides "stt" add about 10, one level each with the server, the plain
#: server and naive, warm-ups capped at 15 s). ``naive_levels`` are also the plain server's.
DEFAULT_PLANS: dict[str, Plan] = {
    "null": Plan((1, 16, 64), (1, 16, 64), window_s=3.0),
    "stt": Plan((1, 4, 16), (1, 16), window_s=15.0, ceiling_window_s=12.0),
    "stt-short": Plan((16,), (16,), window_s=8.0, max_warmup_s=15.0),
    "stt-same": Plan((32,), (32,), window_s=8.0, max_warmup_s=15.0),
    "stt-repeat": Plan((16,), (16,), window_s=6.0, max_warmup_s=15.0),
    "stt-long": Plan((16,), (16,), window_s=10.0, max_warmup_s=15.0),
    "tts-piper": Plan((1, 4, 16), (1, 16), window_s=8.0, ceiling_window_s=8.0),
    "tts-kokoro": Plan((1, 16), (1, 16), window_s=10.0, ceiling_window_s=10.0),
    "cache-hit": Plan((32,), window_s=5.0),
    "streaming-stt": Plan((1, 4), window_s=15.0),
}
#: Ray Serve layouts tried (the best one is the baseline); one replica per core or one
#: replica using every core, batches as Ray's docs show them.
RAY_LAYOUTS = (
    {"replicas": 2, "threads": 1, "max_batch_size": 8, "wait_ms": 10},
    {"replicas": 1, "threads": 2, "max_batch_size": 8, "wait_ms": 10},
)
CACHE_HIT_SEQUENTIAL = 300
#: The STT batcher of the fixed-delay vs adaptive-waiting comparison.
ADAPTIVE_BASE: dict[str, Any] = {"max_batch_size": 8, "max_queue_delay_ms": 100.0}
#: The null engine's batcher, as a fast engine would be configured: one instance (the work
#: is nothing), batches up to 32 that grow only under load, and no deliberate queue delay
#: (a delay is a configured wait, not overhead).
NULL_ENGINE_SETTINGS: dict[str, Any] = {
    "instances": 1,
    "batcher": {"max_batch_size": 32, "max_queue_delay_ms": 0.0, "max_queue_size": 4096},
}


@dataclass
class RunOptions:
    scenarios: list[str]
    baselines: set[str]
    out_dir: Path
    name: str
    #: A running server to drive instead of starting one (host:port, loopback only).
    target: str | None = None
    target_metrics_port: int | None = None
    #: The user's server config (YAML as a dict), under the bench's own overrides.
    base_config: dict[str, Any] = field(default_factory=dict)
    levels: tuple[int, ...] | None = None
    window_s: float | None = None
    max_warmup_s: float = 30.0
    adaptive_target_ms: float = 2000.0
    #: Before each measurement, wait up to this long for other processes to go quiet.
    await_quiet_s: float = 0.0
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def plan(self, scenario: str) -> Plan:
        plan = DEFAULT_PLANS[scenario]
        if self.levels is not None:
            naive = (min(self.levels), max(self.levels)) if plan.naive_levels else ()
            plan = replace(plan, levels=self.levels, naive_levels=tuple(sorted(set(naive))))
        if self.window_s is not None:
            plan = replace(plan, window_s=self.window_s, ceiling_window_s=self.window_s)
        return plan


@dataclass
class Context:
    options: RunOptions
    log_dir: Path
    progress: Progress

    def server_config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return deep_merge(self.options.base_config, overrides)


@dataclass
class ScenarioResult:
    status: str = "ok"
    reason: str | None = None
    systems: dict[str, SystemResult] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "systems": {name: s.as_dict() for name, s in self.systems.items()},
            "extra": self.extra,
        }


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def step_count(options: RunOptions) -> int:
    """Measurements the run will make (the progress bar's total)."""
    total = 0
    for scenario in options.scenarios:
        plan = options.plan(scenario)
        total += len(plan.levels)
        if scenario in ("null", *STT_SCENARIOS, "tts-piper", "tts-kokoro") and (
            "naive" in options.baselines
        ):
            total += len(plan.naive_levels)
        if scenario in STT_SCENARIOS and "plain" in options.baselines:
            total += len(plan.naive_levels)
        if scenario == "null":
            total += 2 * len(plan.levels) + 1
        if scenario in ("stt", "tts-piper", "tts-kokoro") and "ceiling" in options.baselines:
            total += 3 if scenario == "stt" else 2
        if scenario == "stt" and not options.target:
            total += 4  # fixed delay vs adaptive waiting, two levels each
            if "ray" in options.baselines:
                total += len(RAY_LAYOUTS)
        if scenario == "cache-hit":
            backends = 2 if _redis_reachable() else 1
            total += (1 + len(plan.levels)) * backends - len(plan.levels)
    return total


# ------------------------------------------------------------------------------- helpers


def _measure(
    ctx: Context,
    server: Measured,
    method: str,
    requests: Sequence[workload.Request],
    levels: Sequence[int],
    window_s: float,
    label: str,
    *,
    output_audio: bool,
    metadata: tuple[tuple[str, str], ...] = (),
    isolation: bool = False,
) -> list[dict[str, Any]]:
    return _measure_levels(
        server,
        Target(server.address, method, metadata),
        requests,
        levels,
        window_s=window_s,
        max_warmup_s=ctx.options.max_warmup_s,
        output_audio=output_audio,
        batcher_model=None,
        progress=ctx.progress,
        label=label,
        await_quiet_s=ctx.options.await_quiet_s,
        isolation=isolation,
    )


def _measure_as(
    ctx: Context,
    method: str,
    requests: Sequence[workload.Request],
    levels: Sequence[int],
    window_s: float,
    label: str,
    server: Measured,
    *,
    output_audio: bool,
) -> list[dict[str, Any]]:
    """_measure with the server last, for functools.partial."""
    return _measure(ctx, server, method, requests, levels, window_s, label,
                    output_audio=output_audio)


def _run_system(
    ctx: Context,
    system: SystemResult,
    start: Callable[[], procs.ServerProcess],
    body: Callable[[procs.ServerProcess], list[dict[str, Any]]],
    *,
    start_timeout_s: float = 300.0,
) -> SystemResult:
    """Starts a server, measures it, records its peak RSS, always stops it."""
    server = start()
    try:
        server.start(start_timeout_s)
        system.start_seconds = round(server.start_seconds, 2)
        system.levels = body(server)
    except Exception as error:
        log.exception("%s failed", server.name)
        system.status, system.reason = "failed", f"{type(error).__name__}: {error}"
    finally:
        system.peak_rss_mb = server.record_peak_rss()
        server.stop()
    return system


def _remote(ctx: Context) -> RemoteServer:
    assert ctx.options.target is not None
    return RemoteServer(ctx.options.target, ctx.options.target_metrics_port)


def _server_system(
    ctx: Context,
    name: str,
    overrides: dict[str, Any],
    services: Sequence[str],
    method: str,
    requests: Sequence[workload.Request],
    levels: Sequence[int],
    window_s: float,
    *,
    output_audio: bool,
    isolation: bool = False,
) -> SystemResult:
    """The platform's own server: started with the scenario's config, or the --target."""
    if ctx.options.target:
        system = SystemResult("server", config={"target": ctx.options.target})
        system.notes.append("a running server given with --target: no RSS or CPU time")
        try:
            system.levels = _measure(ctx, _remote(ctx), method, requests, levels, window_s,
                                     name, output_audio=output_audio, isolation=isolation)
        except Exception as error:
            system.status, system.reason = "failed", f"{type(error).__name__}: {error}"
        return system
    config = ctx.server_config(overrides)
    system = SystemResult("server", config=config)
    return _run_system(
        ctx,
        system,
        lambda: procs.speech_server(name, config, ctx.log_dir, services=services),
        lambda server: _measure(ctx, server, method, requests, levels, window_s, name,
                                output_audio=output_audio, isolation=isolation),
    )


def _naive_system(
    ctx: Context, engine: str, method: str, requests: Sequence[workload.Request],
    levels: Sequence[int], window_s: float, *, output_audio: bool, isolation: bool = False,
) -> SystemResult:
    system = SystemResult("naive", config={
        "engine": engine, "workers": 1, "defaults": "library defaults, one request at a time"
    })
    return _run_system(
        ctx,
        system,
        lambda: procs.naive_server(engine, ctx.log_dir),
        lambda server: _measure(ctx, server, method, requests, levels, window_s,
                                f"naive-{engine}", output_audio=output_audio,
                                isolation=isolation),
    )


def _plain_system(
    ctx: Context, requests: Sequence[workload.Request], levels: Sequence[int], window_s: float,
) -> SystemResult:
    """The plain STT server a user would write (tools/bench/plain_server.py)."""
    from tools.bench import plain_server

    system = SystemResult("plain", config={
        "engine": "faster-whisper WhisperModel.transcribe", "model": "tiny.en",
        "compute_type": "int8", "instances": plain_server.INSTANCES,
        "cpu_threads": plain_server.THREADS, "beam_size": plain_server.BEAM_SIZE,
        "batching": "none, one request per instance at a time",
    })
    return _run_system(
        ctx,
        system,
        lambda: procs.plain_server(ctx.log_dir),
        lambda server: _measure(ctx, server, TRANSCRIBE, requests, levels, window_s,
                                "plain-stt", output_audio=False, isolation=True),
    )


def _ceiling_system(
    ctx: Context, engine: str, items: Sequence[Any], window_s: float, stt_batch: int
) -> SystemResult:
    system = SystemResult("ceiling", config={"layouts": []})
    layouts = ceiling.layouts_for(engine, ctx.options.cores, stt_batch)
    measured = []
    for layout in layouts:
        ctx.progress.step(f"ceiling {layout.label}")
        try:
            measured.append(ceiling.measure_layout(
                layout, items, window_s=window_s, max_warmup_s=ctx.options.max_warmup_s,
                await_quiet_s=ctx.options.await_quiet_s,
            ))
        except Exception as error:
            log.exception("ceiling layout %s failed", layout.label)
            system.notes.append(f"{layout.label}: {type(error).__name__}: {error}")
        ctx.progress.done()
    system.config["layouts"] = measured
    usable = [m for m in measured if m["requests"] > 0]
    if not usable:
        system.status, system.reason = "failed", "no layout produced results"
        return system
    best = max(usable, key=lambda m: m["audio_s_per_s"])
    system.config["best"] = best["layout"]
    system.levels = [best]
    return system


def _ray_system(ctx: Context, requests: Sequence[workload.Request], level: int,
                window_s: float) -> SystemResult:
    system = SystemResult("ray", config={"layouts": []})
    try:
        import ray  # noqa: F401  (only to know whether the optional extra is installed)
    except ImportError:
        system.status = "skipped"
        system.reason = (
            "ray is not installed (optional extra: pip install 'speech-platform[bench]')"
        )
        for _ in RAY_LAYOUTS:
            ctx.progress.done()
        return system
    server = procs.ray_server(ctx.log_dir)
    measured: list[dict[str, Any]] = []
    try:
        server.start(240)
        system.start_seconds = round(server.start_seconds, 2)
        for layout in RAY_LAYOUTS:
            label = "ray {replicas}x{threads} batch {max_batch_size}".format(**layout)
            ctx.progress.step(label)
            server.send_line(json.dumps(layout))
            server.wait_line("DEPLOYED", 240)
            metadata = (("application", "whisper"),)
            _await_ray_route(server.address, requests[0], metadata)
            (summary,) = _measure_levels(
                server, Target(server.address, TRANSCRIBE, metadata), requests, [level],
                window_s=window_s, max_warmup_s=ctx.options.max_warmup_s, output_audio=False,
                batcher_model=None, progress=Progress(), label=label,
                await_quiet_s=ctx.options.await_quiet_s, isolation=True,
            )
            summary["layout"] = layout
            summary["rss_tree_mb"] = server.rss_mb()
            measured.append(summary)
            ctx.progress.done()
    except Exception as error:
        log.exception("ray baseline failed")
        system.status, system.reason = "failed", f"{type(error).__name__}: {error}"
    finally:
        system.peak_rss_mb = server.rss_mb()
        server.stop(60)
    system.notes.append("peak_rss_mb here is the resident memory of all Ray processes at the end")
    system.config["layouts"] = measured
    usable = [m for m in measured if m["requests"] > 0]
    if usable:
        best = max(usable, key=lambda m: m["audio_s_per_s"])
        system.config["best"] = best["layout"]
        system.levels = [best]
    elif system.status == "ok":
        system.status, system.reason = "failed", "no layout produced results"
    return system


def _await_ray_route(address: str, request: workload.Request,
                     metadata: tuple[tuple[str, str], ...]) -> None:
    """Ray's proxy learns new routes a moment after serve.run returns: wait for one answer."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(TRANSCRIBE)
        for _attempt in range(60):
            try:
                call(request.payload, metadata=metadata, timeout=120)
                return
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            time.sleep(0.5)
    raise RuntimeError("Ray Serve never routed the application")


# ------------------------------------------------------------------------------ scenarios


def run_null(ctx: Context) -> ScenarioResult:
    """The null engine: server and batcher with no engine work, against the naive server."""
    plan = ctx.options.plan("null")
    result = ScenarioResult()
    requests = workload.null_requests()
    config = ctx.server_config({"stt": NULL_ENGINE_SETTINGS})
    modes = (
        ("server", "batched", "the SpeechServer, interceptor and batcher, as any engine runs"),
        ("server-no-batcher", "no-batcher", "same SpeechServer and interceptor, engine inline"),
        ("bare-grpc-aio", "bare", "a plain grpc.aio server with the same servicer, inline"),
    )
    for name, mode, note in modes:
        system = SystemResult(name, config=config, notes=[note])
        result.systems[name] = _run_system(
            ctx, system,
            partial(procs.null_server, f"null-{name}", config, ctx.log_dir, mode=mode),
            partial(_measure_as, ctx, TRANSCRIBE, requests, plan.levels, plan.window_s,
                    f"null {name}", output_audio=False),
        )
    if "naive" in ctx.options.baselines:
        result.systems["naive"] = _naive_system(
            ctx, "null", TRANSCRIBE, requests, plan.naive_levels, plan.window_s,
            output_audio=False,
        )
    ctx.progress.step("batcher in-process")
    result.extra["batcher_inprocess"] = batcher_overhead.measure(
        window_s=min(2.0, plan.window_s)
    )
    ctx.progress.done()
    return result


def run_stt(ctx: Context, scenario: str = "stt") -> ScenarioResult:
    """An STT workload against the server, the plain server and naive (plus, for the
    LibriVox mix "stt", the waiting comparison, the in-process ceiling and Ray Serve). Every
    system is checked for isolation: each distinct request served alone first, then every
    transcript under load compared with it."""
    plan = ctx.options.plan(scenario)
    if plan.max_warmup_s is not None and plan.max_warmup_s < ctx.options.max_warmup_s:
        ctx = replace(ctx, options=replace(ctx.options, max_warmup_s=plan.max_warmup_s))
    result = ScenarioResult()
    requests = workload.stt_requests(scenario=scenario)
    clips = workload.workload_clips(scenario)
    result.extra["workload"] = {
        "clips": len(clips),
        "distinct": len({c.name for c in clips}),
        "audio_s": [round(c.duration_s, 3) for c in clips],
        "with_reference": sum(1 for c in clips if c.reference),
    }
    overrides: dict[str, Any] = {"cache": {"backend": "off"}}
    result.systems["server"] = _server_system(
        ctx, scenario, overrides, ["stt"], TRANSCRIBE, requests, plan.levels, plan.window_s,
        output_audio=False, isolation=True,
    )
    if "plain" in ctx.options.baselines:
        result.systems["plain"] = _plain_system(ctx, requests, plan.naive_levels, plan.window_s)
    if "naive" in ctx.options.baselines:
        result.systems["naive"] = _naive_system(
            ctx, "stt", TRANSCRIBE, requests, plan.naive_levels, plan.window_s,
            output_audio=False, isolation=True,
        )
    if scenario != "stt":
        return result
    if not ctx.options.target:
        # Waiting only matters where batches may form: both servers batch up to 8 with a
        # fixed 100 ms delay; the adaptive one may cut that wait (batcher.adaptive).
        levels = sorted({min(plan.levels), max(plan.levels)})
        for name, batcher in (
            ("server-fixed-delay", ADAPTIVE_BASE),
            ("server-adaptive",
             {**ADAPTIVE_BASE, "target_latency_ms": ctx.options.adaptive_target_ms}),
        ):
            system = _server_system(
                ctx, f"stt-{name}", deep_merge(overrides, {"stt": {"batcher": batcher}}),
                ["stt"], TRANSCRIBE, requests, levels, plan.window_s, output_audio=False,
                isolation=True,
            )
            system.kind = name
            result.systems[name] = system
    if "ceiling" in ctx.options.baselines:
        stt = _merged_stt(ctx)
        result.systems["ceiling"] = _ceiling_system(
            ctx, "stt", workload.mixed_clips(), plan.ceiling_window_s,
            int(stt["batcher"].get("max_batch_size", 1)),
        )
    if "ray" in ctx.options.baselines:
        result.systems["ray"] = _ray_system(ctx, requests, max(plan.levels), plan.window_s)
    return result


def _merged_stt(ctx: Context) -> dict[str, Any]:
    from speech_platform.config import SttSettings

    stt = SttSettings.model_validate(ctx.options.base_config.get("stt", {}))
    return stt.model_dump()


def run_tts(ctx: Context, engine: str) -> ScenarioResult:
    scenario = f"tts-{engine}"
    plan = ctx.options.plan(scenario)
    result = ScenarioResult()
    requests = workload.tts_requests(engine)
    overrides = {"tts": {"engines": [engine]}, "cache": {"backend": "off"}}
    result.systems["server"] = _server_system(
        ctx, scenario, overrides, ["tts"], SYNTHESIZE, requests, plan.levels, plan.window_s,
        output_audio=True,
    )
    if "naive" in ctx.options.baselines:
        result.systems["naive"] = _naive_system(
            ctx, engine, SYNTHESIZE, requests, plan.naive_levels, plan.window_s,
            output_audio=True,
        )
    if "ceiling" in ctx.options.baselines:
        result.systems["ceiling"] = _ceiling_system(
            ctx, engine, workload.tts_texts(engine), plan.ceiling_window_s, 1
        )
    return result


def _redis_reachable(host: str = procs.LOOPBACK, port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def run_cache_hit(ctx: Context) -> ScenarioResult:
    """The same 5 s WAV twice: the second answer comes from the cache."""
    plan = ctx.options.plan("cache-hit")
    result = ScenarioResult()
    clip = workload.five_second_clip()
    request = workload.transcribe_request(clip, skip_cache=False)
    backends: list[tuple[str, dict[str, Any]]] = [("memory", {"backend": "memory"})]
    if _redis_reachable():
        prefix = f"speech-bench:{uuid.uuid4().hex[:12]}:"
        backends.append(("redis", {
            "backend": "redis", "redis_url": f"redis://{procs.LOOPBACK}:6379/0",
            "key_prefix": prefix, "ttl_s": 300,
        }))
    else:
        result.extra["redis"] = "skipped: no Redis answers on 127.0.0.1:6379"
    for backend, cache in backends:
        name = f"server-{backend}"
        system = SystemResult("server", config={"cache": cache})

        def body(server: Measured, system: SystemResult = system) -> list[dict[str, Any]]:
            return _cache_hits(ctx, server, request, plan, system)

        if ctx.options.target:
            system.config = {"target": ctx.options.target}
            try:
                system.levels = body(_remote(ctx))
            except Exception as error:
                system.status, system.reason = "failed", f"{type(error).__name__}: {error}"
            result.systems[name] = system
            break
        config = ctx.server_config({"cache": cache})
        system.config = config
        result.systems[name] = _run_system(
            ctx, system,
            partial(procs.speech_server, f"cache-{name}", config, ctx.log_dir, services=["stt"]),
            body,
        )
    return result


def _cache_hits(
    ctx: Context, server: Measured, request: workload.Request, plan: Plan, system: SystemResult
) -> list[dict[str, Any]]:
    import asyncio

    from tools.bench.loadgen import sequential_calls
    from tools.bench.measure import summarise

    ctx.progress.step("cache-hit sequential")
    first, repeated = asyncio.run(
        sequential_calls(Target(server.address, TRANSCRIBE), request, CACHE_HIT_SEQUENTIAL,
                         time_cap_s=max(plan.window_s, 5.0))
    )
    hit = first.answer is not None and first.answer.cache_hit
    system.notes.append(
        f"first call ({first.code}): {first.latency_s * 1000:.1f} ms, cache_hit={hit}"
    )
    ctx.progress.done()
    levels = [summarise(repeated, output_audio=False)]
    levels += _measure(ctx, server, TRANSCRIBE, [request], plan.levels, plan.window_s,
                       "cache-hit", output_audio=False)
    return levels


def run_streaming(ctx: Context) -> ScenarioResult:
    from tools.bench import streaming

    plan = ctx.options.plan("streaming-stt")
    result = ScenarioResult()
    overrides: dict[str, Any] = {"cache": {"backend": "off"}}

    def body(server: Measured) -> list[dict[str, Any]]:
        levels = []
        for concurrency in plan.levels:
            ctx.progress.step(f"streaming c={concurrency}")
            # Recordings average about 5 s at real-time pace: rounds fill the window.
            rounds = max(1, round(plan.window_s / 5.0))
            levels.append(streaming.measure(server.address, concurrency, rounds))
            ctx.progress.done()
        return levels

    system = SystemResult("server", config=ctx.server_config(overrides))
    if ctx.options.target:
        system.config = {"target": ctx.options.target}
        system.levels = body(_remote(ctx))
        result.systems["server"] = system
    else:
        result.systems["server"] = _run_system(
            ctx, system,
            lambda: procs.speech_server("streaming", system.config, ctx.log_dir,
                                        services=["stt"]),
            body,
        )
    server_result = result.systems["server"]
    if server_result.levels and all(lv.get("unimplemented") for lv in server_result.levels):
        result.status = "skipped"
        result.reason = "the server does not implement StreamingTranscribe"
    return result


RUNNERS: dict[str, Callable[[Context], ScenarioResult]] = {
    "null": run_null,
    **{scenario: partial(run_stt, scenario=scenario) for scenario in STT_SCENARIOS},
    "tts-piper": lambda ctx: run_tts(ctx, "piper"),
    "tts-kokoro": lambda ctx: run_tts(ctx, "kokoro"),
    "cache-hit": run_cache_hit,
    "streaming-stt": run_streaming,
}


def run_scenario(ctx: Context, scenario: str) -> tuple[ScenarioResult, float]:
    started = time.perf_counter()
    try:
        outcome = RUNNERS[scenario](ctx)
    except Exception as error:
        log.exception("scenario %s failed", scenario)
        outcome = ScenarioResult("failed", f"{type(error).__name__}: {error}")
    if outcome.status == "ok" and all(s.status != "ok" for s in outcome.systems.values()):
        outcome.status = "failed"
        outcome.reason = "; ".join(
            f"{n}: {s.reason}" for n, s in outcome.systems.items() if s.reason
        )
    return outcome, time.perf_counter() - started
