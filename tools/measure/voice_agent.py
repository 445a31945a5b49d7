"""What the voice-agent options cost: N-best alternatives, the quality report, per-channel.

    flock /work/bench.lock python -m tools.measure.voice_agent [--rounds 3] [--json out.json]

One Transcriber (tiny.en, int8, one instance of one thread, beam 5), requests one at a
time, so each figure is the cost of the request itself. Every benchmark recording of
3-30 s (``mixed_clips``) plus a 60 s conversation is transcribed in rounds, the modes
interleaved clip by clip (plain, ``max_alternatives=5``, quality report); reported per mode:
process CPU seconds and wall seconds in all, and their ratio to plain, plus whether every
transcript was identical to the plain one. The VAD pass alone is timed too (CPU seconds
per audio second), and a two-speaker stereo call transcribed per channel against mixed down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from speech_platform.config import SttSettings
from stt_service.audio import DecodedAudio
from stt_service.options import TranscribeOptions
from stt_service.quality import speech_intervals
from stt_service.recognize import recognize
from stt_service.transcriber import Transcriber
from tools.bench.workload import conversation_clips, mixed_clips

MODES: dict[str, TranscribeOptions] = {
    "plain": TranscribeOptions(language="en", beam_size=5),
    "alternatives_5": TranscribeOptions(language="en", beam_size=5, max_alternatives=5),
    "quality_report": TranscribeOptions(language="en", beam_size=5, quality_report=True),
}


def _audio(pcm: np.ndarray) -> np.ndarray:
    return (pcm.astype(np.float32) / 32768.0).reshape(-1)


async def measure(rounds: int) -> dict[str, Any]:
    transcriber = Transcriber(SttSettings(instances=1, cpu_threads=1))
    await transcriber.start()
    clips = [_audio(c.pcm) for c in mixed_clips()]
    conversations = [_audio(c.pcm) for c in conversation_clips()]
    clips.append(np.concatenate(conversations)[: 60 * 16000])
    audio_s = sum(len(c) for c in clips) / 16000
    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    same = True
    for _ in range(rounds):
        for samples in clips:
            texts = {}
            for mode, options in MODES.items():
                resolved = transcriber.resolve(options)
                started, started_cpu = time.perf_counter(), time.process_time()
                transcript = await recognize(
                    transcriber, DecodedAudio(samples, "PCM", 16000, 1), resolved
                )
                cpu[mode] += time.process_time() - started_cpu
                wall[mode] += time.perf_counter() - started
                texts[mode] = transcript.text
            same = same and len(set(texts.values())) == 1
    vad_cpu = time.process_time()
    for samples in clips:
        speech_intervals(samples)
    vad_cpu = time.process_time() - vad_cpu
    stereo = _stereo(clips[0], clips[1])
    per_channel = await _timed(transcriber, stereo, separate=True)
    mixed = await _timed(transcriber, stereo, separate=False)
    await transcriber.stop()
    report: dict[str, Any] = {
        "clips": len(clips),
        "audio_s_per_round": round(audio_s, 1),
        "rounds": rounds,
        "transcripts_identical_across_modes": same,
        "vad_cpu_s_per_audio_s": round(vad_cpu / audio_s, 5),
        "stereo_call_s": round(stereo.shape[1] / 16000, 1),
        "stereo_per_channel_cpu_s": round(per_channel, 3),
        "stereo_mixed_down_cpu_s": round(mixed, 3),
    }
    for mode in MODES:
        report[mode] = {
            "cpu_s": round(cpu[mode], 2),
            "wall_s": round(wall[mode], 2),
            "cpu_vs_plain": round(cpu[mode] / cpu["plain"], 3),
            "wall_vs_plain": round(wall[mode] / wall["plain"], 3),
        }
    return report


def _stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    planes = np.zeros((2, max(len(left), len(right))), np.float32)
    planes[0, : len(left)] = left
    planes[1, : len(right)] = right
    return planes


async def _timed(transcriber: Transcriber, planes: np.ndarray, *, separate: bool) -> float:
    resolved = transcriber.resolve(TranscribeOptions(language="en", separate_channels=separate))
    audio = DecodedAudio(planes.mean(axis=0), "PCM", 16000, 2, planes if separate else None)
    started = time.process_time()
    await recognize(transcriber, audio, resolved)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(measure(args.rounds))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
