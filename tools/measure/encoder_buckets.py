"""Why the smallest encoder bucket is 10 s: every real recording decoded at several sizes.

    python -m tools.measure.encoder_buckets [--floors 5,8,10,15,30] [--json out.json]

For each floor F, a Transcriber (tiny.en, int8, one instance of one thread, beam 5) is given
the buckets (F, 20, 30) s, or (30,) for F = 30, i.e. faster-whisper's fixed 30 s input, and
transcribes
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
import asyncio
import difflib
import json
import re
import resource
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import WhisperModel

from speech_platform.config import SttBatcherSettings, SttSettings
from stt_service.assets import model_path
from stt_service.options import TranscribeOptions
from stt_service.transcriber import Transcriber
from tools.bench.workload import all_recordings, conversation_clips

MAX_SAMPLES = 30 * 16000


_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def words(text: str) -> list[str]:
    """Lower case, no punctuation, and digits as spoken one by one, so that "293 40",
    "2-9-3-4-0" and "two nine three four zero" compare equal (the same words said).

    >>> words("2-9-3-4-0."), words("Two nine three, four zero"), words("Ten of clubs")
    (['2', '9', '3', '4', '0'], ['2', '9', '3', '4', '0'], ['ten', 'of', 'clubs'])
    """
    found = []
    for word in re.sub(r"[^\w\s']", " ", text.lower().replace("-", " ")).split():
        if word in _DIGITS:
            found.append(str(_DIGITS.index(word)))
        elif word.isdigit():
            found.extend(word)
        else:
            found.append(word)
    return found


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
    reference_model = WhisperModel(str(model_path("tiny.en")), compute_type="int8", cpu_threads=1)
    reference = {
        name: words(" ".join(s.text for s in reference_model.transcribe(x, beam_size=5)[0]))
        for name, x in clips.items()
    }
    rows = []
    for floor in floors:
        buckets = [30.0] if floor >= 30 else [floor, 20.0, 30.0]
        rows.append(asyncio.run(_measure_floor(floor, buckets, clips, reference)))
        print(rows[-1], flush=True)
    return {"rows": rows, "clip_seconds": {n: round(len(x) / 16000, 2) for n, x in clips.items()}}


async def _measure_floor(
    floor: float,
    buckets: list[float],
    clips: dict[str, np.ndarray],
    reference: dict[str, list[str]],
) -> dict[str, Any]:
    """Every clip through a Transcriber (one instance, one thread, no batching), as a
    request is served: a window left open is decoded on from where it stopped."""
    settings = SttSettings(
        instances=1,
        cpu_threads=1,
        encoder_buckets_s=buckets,
        batcher=SttBatcherSettings(max_batch_size=1),
    )
    transcriber = Transcriber(settings)
    await transcriber.start()
    options = TranscribeOptions(language="en", beam_size=5)
    await transcriber.transcribe(next(iter(clips.values())), options)  # warm up
    (engine,) = transcriber.model().engines
    redone = engine.redone_at_full_length
    same = inserted = deleted = 0
    started = cpu_seconds()
    for name, samples in clips.items():
        got = words((await transcriber.transcribe(samples, options)).text)
        same += got == reference[name]
        ins, dels = inserted_deleted(reference[name], got)
        inserted, deleted = inserted + ins, deleted + dels
    cpu = cpu_seconds() - started
    await transcriber.stop(5.0)
    return {
        "floor_s": floor,
        "clips": len(clips),
        "same_words_as_faster_whisper": same,
        "words_inserted": inserted,
        "words_deleted": deleted,
        "redone_at_30s": engine.redone_at_full_length - redone,
        "cpu_s_per_clip": round(cpu / len(clips), 3),
    }


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
