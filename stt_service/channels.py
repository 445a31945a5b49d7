"""Per-channel recognition: each channel of multi-channel audio transcribed on its own.

A recorded call often has the agent on one channel and the caller on the other; mixed down,
their overlapping speech garbles both. With ``enable_separate_recognition_per_channel`` each
channel is transcribed as a request of its own (its windows go through the batcher like
any request's, and never share a model input with the other channel), then the results
are merged: segments and words carry their 1-based ``channel_tag`` and are ordered by
time (the channel number breaks ties), so the merged text reads as the conversation went.
Each channel's own text, language and N-best stay in ``Transcript.channels``; the
response-level N-best is left empty (a hypothesis of a merged conversation would mix
windows of different channels).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import replace

import numpy as np

from stt_service.alternatives import joiner_for
from stt_service.assembly import ChannelTranscript, Transcript
from stt_service.transcriber import ProgressCallback, ResolvedOptions, Transcriber


async def transcribe_channels(
    transcriber: Transcriber,
    channels: np.ndarray,
    resolved: ResolvedOptions,
    *,
    priority: int = 1,
    timeout_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    caller: Hashable | None = None,
) -> Transcript:
    """Transcribes each row of ``channels`` (shape (channels, samples), 16 kHz) at once."""
    progress = _ChannelProgress(len(channels), on_progress)
    transcripts = await asyncio.gather(
        *(
            transcriber.transcribe(
                plane,
                resolved,
                priority=priority,
                timeout_s=timeout_s,
                on_progress=progress.callback(index),
                caller=caller,
            )
            for index, plane in enumerate(channels)
        )
    )
    return merge_channels(transcripts)


def merge_channels(transcripts: Sequence[Transcript]) -> Transcript:
    """One transcript from per-channel ones (``transcripts[i]`` is channel i + 1)."""
    tagged = [_tagged(transcript, index + 1) for index, transcript in enumerate(transcripts)]
    segments = sorted(
        (s for t in tagged for s in t.segments), key=lambda s: (s.start_seconds, s.channel_tag)
    )
    words = sorted(
        (w for t in tagged for w in t.words), key=lambda w: (w.start_seconds, w.channel_tag)
    )
    main = max(tagged, key=_speech_seconds)
    return Transcript(
        text=joiner_for(main.language_code).join(s.text for s in segments),
        segments=[replace(s, id=index) for index, s in enumerate(segments)],
        words=words,
        language_code=main.language_code,
        language_probability=main.language_probability,
        audio_duration_seconds=max(t.audio_duration_seconds for t in tagged),
        model=main.model,
        window_alternatives=sorted(
            (w for t in tagged for w in t.window_alternatives),
            key=lambda w: (w.start_seconds, w.channel_tag),
        ),
        channels=[
            ChannelTranscript(
                channel_tag=index + 1,
                text=t.text,
                language_code=t.language_code,
                language_probability=t.language_probability,
                alternatives=tuple(t.alternatives),
            )
            for index, t in enumerate(tagged)
        ],
    )


def _tagged(transcript: Transcript, tag: int) -> Transcript:
    return replace(
        transcript,
        segments=[replace(s, channel_tag=tag) for s in transcript.segments],
        words=[replace(w, channel_tag=tag) for w in transcript.words],
        window_alternatives=[replace(w, channel_tag=tag) for w in transcript.window_alternatives],
    )


def _speech_seconds(transcript: Transcript) -> float:
    """Seconds of segments: the channel heard most names the response's language."""
    return sum(s.end_seconds - s.start_seconds for s in transcript.segments)


class _ChannelProgress:
    """Adds up the channels' window counts into one on_progress callback."""

    def __init__(self, channels: int, callback: ProgressCallback | None) -> None:
        self._done = [0] * channels
        self._total = [0] * channels
        self._callback = callback

    def callback(self, index: int) -> ProgressCallback | None:
        if self._callback is None:
            return None

        def report(done: int, total: int) -> None:
            self._done[index], self._total[index] = done, total
            assert self._callback is not None
            self._callback(sum(self._done), sum(self._total))

        return report
