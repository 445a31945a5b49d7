"""Measures the STT engine settings side by side, to choose the defaults of ``stt``.

    python -m tools.measure.stt [--rounds 2] [--clients 16] [--json out.json]

Each configuration runs in its own subprocess (so peak RSS and CTranslate2 thread pools do
not mix), rounds interleave the configurations (this machine is shared and noisy), and
every figure is reported next to the baseline: the same model served one request at a time
with library defaults (``WhisperModel(path).transcribe(audio)``). In-process, no gRPC:
this isolates the engine, instances and batching; ``python -m tools.bench`` measures the server.

The concurrent load is short clips (3-10 s: the LibriVox clips and goforward.raw, alone
and in pairs); every run also reports its mean WER against the references and how many
windows the encoder ran at each length (``stt.encoder_buckets_s``; "30 s only" is the
fixed 30 s input that faster-whisper uses).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import wave
from collections import Counter
from typing import Any

import numpy as np

from tools.measure import harness

SIZED = (10.0, 20.0, 30.0)
FIXED_30 = (30.0,)
#: name -> (instances, cpu_threads, max_batch_size, max_queue_delay_ms, encoder buckets)
CONFIGS: dict[str, tuple[int, int, int, float, tuple[float, ...]]] = {
    "2 inst x 1 thr, batch 4, 0 ms": (2, 1, 4, 0.0, SIZED),
    "2 inst x 1 thr, batch 8, 0 ms": (2, 1, 8, 0.0, SIZED),
    "2 inst x 1 thr, batch 1, 0 ms": (2, 1, 1, 0.0, SIZED),
    "1 inst x 2 thr, batch 4, 0 ms": (1, 2, 4, 0.0, SIZED),
    "2 inst x 1 thr, batch 4, 0 ms, 30 s only": (2, 1, 4, 0.0, FIXED_30),
    "2 inst x 1 thr, batch 1, 0 ms, 30 s only": (2, 1, 1, 0.0, FIXED_30),
}
#: Silence between the two clips of a paired test clip.
PAIR_GAP_S = 0.3
#: Clips of the concurrent load are at most this long.
LOAD_MAX_S = 10.0
BASELINE = "library defaults, one at a time"


def _clips() -> list[np.ndarray]:
    return [samples for samples, _reference in _references()]


def _references() -> list[tuple[np.ndarray, str]]:
    """The test clips with their reference transcripts."""
    from tools.fetch.testdata import testdata_dir

    folder = testdata_dir()
    texts = {}
    for line in (folder / "librivox" / "transcription").read_text().splitlines():
        text, _, name = line.rpartition("(")
        texts[name.strip(" )")] = text.replace("<s>", "").replace("</s>", "").strip()
    clips = []
    for path in sorted((folder / "librivox").glob("*.wav")):
        with wave.open(str(path)) as reader:
            pcm = reader.readframes(reader.getnframes())
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        clips.append((samples, texts[path.stem]))
    raw = (folder / "goforward.raw").read_bytes()
    clips.append((np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0, "go forward ten meters"))
    return clips


def _short_load(clients: int) -> list[tuple[np.ndarray, str]]:
    """``clients`` clips of 3-10 s: each test clip alone, then pairs of them, in turn."""
    singles = _references()
    gap = np.zeros(int(PAIR_GAP_S * 16000), dtype=np.float32)
    pairs = [
        (np.concatenate([a, gap, b]), f"{ra} {rb}")
        for i, (a, ra) in enumerate(singles)
        for (b, rb) in singles[i + 1 :]
        if (len(a) + len(gap) + len(b)) / 16000 <= LOAD_MAX_S
    ]
    mixed = [clip for clip in singles if len(clip[0]) / 16000 <= LOAD_MAX_S] + pairs
    return [mixed[i % len(mixed)] for i in range(clients)]


def _mean_wer(references: list[str], texts: list[str]) -> float:
    import jiwer

    def normalise(text: str) -> str:
        return " ".join(
            "".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split()
        )

    return statistics.mean(
        float(jiwer.wer(normalise(r), normalise(t))) for r, t in zip(references, texts, strict=True)
    )


async def _run_config(name: str, clients: int) -> dict[str, Any]:
    from speech_platform.config import SttBatcherSettings, SttSettings
    from stt_service.options import TranscribeOptions
    from stt_service.transcriber import Transcriber

    instances, threads, batch, delay, buckets = CONFIGS[name]
    settings = SttSettings(
        instances=instances,
        cpu_threads=threads,
        encoder_buckets_s=list(buckets),
        batcher=SttBatcherSettings(
            max_batch_size=batch, max_queue_delay_ms=delay, max_queue_size=512
        ),
    )
    clips = _clips()
    transcriber = Transcriber(settings)
    await transcriber.start()
    options = TranscribeOptions(language="en")
    await transcriber.transcribe(clips[0], options)  # warm-up
    single = []
    for clip in clips:
        started = time.perf_counter()
        await transcriber.transcribe(clip, options)
        single.append((time.perf_counter() - started, len(clip) / 16000))
    short = _short_load(clients)
    load = [clip for clip, _ in short]
    latencies: list[float] = []

    async def one(clip: np.ndarray) -> str:
        started = time.perf_counter()
        response = await transcriber.transcribe(clip, options)
        latencies.append(time.perf_counter() - started)
        return str(response.text)

    model = transcriber.model()
    observer = model.observer
    observer.batch_sizes.clear()
    windows = _encoded(model.engines)
    cpu = harness.cpu_s()
    started = time.perf_counter()
    texts = await asyncio.gather(*(one(clip) for clip in load))
    wall = time.perf_counter() - started
    cpu = harness.cpu_s() - cpu
    windows = _encoded(model.engines) - windows
    sizes = dict(observer.batch_sizes)
    await transcriber.stop(5.0)
    summary = _summary(name, single, load, wall, cpu, latencies, sizes)
    summary["mean_wer"] = _mean_wer([r for _, r in short], list(texts))
    summary["encoder_windows"] = {f"{frames // 100} s": n for frames, n in sorted(windows.items())}
    return summary


def _encoded(engines: Any) -> Counter[int]:
    """Windows the engines encoded so far, by encoder length (mel frames)."""
    total: Counter[int] = Counter()
    for engine in engines:
        total.update(engine.encoded_frames)
    return total


def _run_baseline(clients: int) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    from stt_service.assets import model_path

    model = WhisperModel(str(model_path("tiny.en")))
    clips = _clips()

    def transcribe(clip: np.ndarray) -> str:
        segments, _info = model.transcribe(clip)
        return "".join(s.text for s in segments)

    transcribe(clips[0])  # warm-up
    single = []
    for clip in clips:
        started = time.perf_counter()
        transcribe(clip)
        single.append((time.perf_counter() - started, len(clip) / 16000))
    short = _short_load(clients)
    load = [clip for clip, _ in short]
    latencies = []
    texts = []
    cpu = harness.cpu_s()
    started = time.perf_counter()
    for clip in load:  # one at a time: every request waits for those before it
        texts.append(transcribe(clip))
        latencies.append(time.perf_counter() - started)
    wall = time.perf_counter() - started
    cpu = harness.cpu_s() - cpu
    summary = _summary(BASELINE, single, load, wall, cpu, latencies, {})
    summary["mean_wer"] = _mean_wer([r for _, r in short], texts)
    summary["encoder_windows"] = len(load)
    return summary


def _summary(
    name: str,
    single: list[tuple[float, float]],
    load: list[np.ndarray],
    wall: float,
    cpu: float,
    latencies: list[float],
    sizes: dict[int, int],
) -> dict[str, Any]:
    audio_s = sum(len(c) for c in load) / 16000
    summary = harness.timing_summary(name, single, audio_s, wall, latencies, sizes)
    summary["cpu_s_per_audio_s"] = cpu / audio_s
    summary["single_rtf"] = statistics.mean(t / d for t, d in single)
    return summary


def _run(name: str, clients: int) -> dict[str, Any]:
    if name == BASELINE:
        return _run_baseline(clients)
    return asyncio.run(_run_config(name, clients))


def main(argv: list[str] | None = None) -> None:
    parser = harness.base_parser("python -m tools.measure.stt", __doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", default=[], help="measure only configs named so (repeatable)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the library baseline")
    args = parser.parse_args(argv)
    if args.run:
        harness.child(_run, args.run, args.clients)
        return
    chosen = [name for name in CONFIGS if not args.only or name in args.only]
    names = ([] if args.no_baseline else [BASELINE]) + chosen
    runs = harness.run_rounds("tools.measure.stt", names, args.rounds, args.clients)

    # Ratios are to the baseline, or without it to the first configuration measured.
    reference = runs[next(iter(runs))]
    base = harness.median(reference, "throughput_audio_s_per_s")
    base_cpu = harness.median(reference, "cpu_s_per_audio_s")
    med = harness.by_median
    harness.print_table(runs.items(), [
        ("1-req s", "7.2f", med("single_latency_s")),
        ("RTF", "6.3f", med("single_rtf")),
        ("aud/s", "6.1f", med("throughput_audio_s_per_s")),
        ("thr x", "6.2f", med("throughput_audio_s_per_s", harness.ratio_to(base))),
        ("cpu/aud", "7.3f", med("cpu_s_per_audio_s")),
        ("cpu x", "6.2f", med("cpu_s_per_audio_s", lambda v: base_cpu / v)),
        ("p50 s", "6.2f", med("concurrent_p50_s")),
        ("WER", "6.3f", med("mean_wer")),
        ("enc", "4.0f", med("encoder_windows")),
        ("RSS MB", "7.0f", harness.peak_rss),
    ], name_width=42)
    harness.write_json(args.json, runs)


if __name__ == "__main__":
    main()
