"""Why the smallest encoder bucket is 10 s: every real recording decoded at several sizes.

    python -m tools.measure.encoder_buckets [--floors 5,8,10,15,30] [--json out.json]

For each floor F, a Whisper engine (tiny.en, int8, one thread, beam 5) is given the buckets
(F, 20, 30) s, or (30,) for F = 30, i.e. faster-whisper's fixed 30 s input, and decodes
every real recording of the test data (and the benchmark's conversations built from them)
of up to 30 s, alone. Reported per floor: how many
transcripts have the same words as faster-whisper's own ``transcribe`` of the same model
and beam, words inserted and deleted against it (substitutions such as "5" for "five" are
neither), how many sized decodes were in doubt and decoded again at 30 s, and the CPU
seconds per clip. A smaller floor is cheaper per decode but loops more often; each loop
costs a decode at 30 s on top.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import resource
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import WhisperModel

from stt_service.assets import model_path
from stt_service.options import DecodeOptions
from stt_service.whisper_engine import EngineConfig, WhisperEngine, WindowItem, WindowResult
from tools.bench.workload import all_recordings, conversation_clips

MAX_SAMPLES = 30 * 16000


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower().replace("-", " ")).split()


def inserted_deleted(reference: list[str], hypothesis: list[str]) -> tuple[int, int]:
    inserted = deleted = 0
    matcher = difflib.SequenceMatcher(a=reference, b=hypothesis, autojunk=False)
    for operation, a0, a1, b0, b1 in matcher.get_opcodes():
        surplus = (b1 - b0) - (a1 - a0)
        if operation in ("insert", "replace") and surplus > 0:
            inserted += surplus
        elif operation in ("delete", "replace") and surplus < 0:
            deleted -= surplus
    return inserted, deleted


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(floors: list[float]) -> dict[str, Any]:
    recordings = [*all_recordings().values(), *conversation_clips()]
    clips = {
        c.name: c.pcm.astype(np.float32) / 32768.0
        for c in recordings
        if len(c.pcm) <= MAX_SAMPLES
    }
    path = model_path("tiny.en")
    reference_model = WhisperModel(str(path), compute_type="int8", cpu_threads=1)
    reference = {
        name: words(" ".join(s.text for s in reference_model.transcribe(x, beam_size=5)[0]))
        for name, x in clips.items()
    }
    rows = []
    for floor in floors:
        buckets = (30.0,) if floor >= 30 else (floor, 20.0, 30.0)
        engine = WhisperEngine(EngineConfig(path, cpu_threads=1, encoder_buckets_s=buckets))
        options = DecodeOptions("en", beam_size=5)
        engine.run_batch([WindowItem(next(iter(clips.values())), options)])  # warm up
        redone = engine.redone_at_full_length
        same = inserted = deleted = 0
        started = cpu_seconds()
        for name, samples in clips.items():
            (result,) = engine.run_batch([WindowItem(samples, options)])
            assert isinstance(result, WindowResult)
            got = words(" ".join(s.text for s in result.segments))
            same += got == reference[name]
            ins, dels = inserted_deleted(reference[name], got)
            inserted, deleted = inserted + ins, deleted + dels
        rows.append(
            {
                "floor_s": floor,
                "clips": len(clips),
                "same_words_as_faster_whisper": same,
                "words_inserted": inserted,
                "words_deleted": deleted,
                "redone_at_30s": engine.redone_at_full_length - redone,
                "cpu_s_per_clip": round((cpu_seconds() - started) / len(clips), 3),
            }
        )
        print(rows[-1], flush=True)
    return {"rows": rows, "clip_seconds": {n: round(len(x) / 16000, 2) for n, x in clips.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--floors", default="5,8,10,15,30")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = measure([float(f) for f in args.floors.split(",")])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
