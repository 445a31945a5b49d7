"""Decoded audio to a Transcript, as a request's options ask: the one entry point that the
servicer and the Jobs service share.

Mixed-down audio goes to the Transcriber as it is; with per-channel recognition each
channel goes on its own (stt_service/channels.py). With a quality report asked for, the
VAD pass it needs (stt_service/quality.py) runs in a worker thread while the windows are
being decoded, so it adds little latency when a core is free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import numpy as np

from stt_service.assembly import Transcript
from stt_service.audio import DecodedAudio
from stt_service.channels import transcribe_channels
from stt_service.quality import assess, speech_intervals
from stt_service.transcriber import ProgressCallback, ResolvedOptions, Transcriber


async def recognize(
    transcriber: Transcriber,
    audio: DecodedAudio,
    resolved: ResolvedOptions,
    *,
    priority: int = 1,
    timeout_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    caller: Hashable | None = None,
) -> Transcript:
    """``audio`` must carry its channels (decode_audio's ``keep_channels``) when
    ``resolved.separate_channels``; mono audio then counts as one channel."""
    planes = audio.channels if audio.channels is not None else audio.samples[None, :]
    if resolved.separate_channels:
        tagged = [(index + 1, plane) for index, plane in enumerate(planes)]
    else:
        tagged = [(0, audio.samples)]
    vad = asyncio.ensure_future(_speech_by_channel(tagged)) if resolved.quality_report else None
    try:
        if resolved.separate_channels:
            transcript = await transcribe_channels(
                transcriber,
                planes,
                resolved,
                priority=priority,
                timeout_s=timeout_s,
                on_progress=on_progress,
                caller=caller,
            )
        else:
            transcript = await transcriber.transcribe(
                audio.samples,
                resolved,
                priority=priority,
                timeout_s=timeout_s,
                on_progress=on_progress,
                caller=caller,
            )
    except BaseException:
        if vad is not None:
            vad.cancel()
            await asyncio.gather(vad, return_exceptions=True)
        raise
    if vad is not None:
        transcript.quality = assess(transcript, await vad)
    return transcript


async def _speech_by_channel(
    tagged: list[tuple[int, np.ndarray]],
) -> dict[int, list[tuple[float, float]]]:
    found = {}
    for tag, samples in tagged:
        found[tag] = await asyncio.to_thread(speech_intervals, samples)
    return found
