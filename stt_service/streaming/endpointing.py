"""Finds where utterances start and end in a stream of VAD frame scores.

The rules are Silero's own (faster_whisper.vad.get_speech_timestamps), made incremental:
a frame scored >= 0.5 starts an utterance; while one goes on, a frame under 0.35 opens a
pause and a frame >= 0.5 closes it again (scores in between change nothing, so speech
that wavers does not end early). A pause of ``endpoint_frames`` ends the utterance at the
pause's first frame: the endpoint.

Whisper reads at most 30 s at a time, so an utterance may not grow past ``max_frames``.
When it reaches that length without an endpoint it is cut at its best pause in the later
half (the longest run of pause frames, the same rule as unary windowing), or hard at the
limit when the speaker never paused; the speech after the cut is the next utterance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from stt_service.streaming.vad import FRAME_SAMPLES, SAMPLE_RATE
from stt_service.windowing import cut_at_pauses

SPEECH_THRESHOLD = 0.5
PAUSE_THRESHOLD = SPEECH_THRESHOLD - 0.15


class EndReason(Enum):
    ENDPOINT = "endpoint"
    WINDOW_LIMIT = "window_limit"
    END_OF_STREAM = "end_of_stream"


@dataclass(frozen=True)
class UtteranceStarted:
    #: Index of the utterance's first frame.
    frame: int


@dataclass(frozen=True)
class UtteranceEnded:
    start_frame: int
    #: One past the utterance's last frame (its speech ends where this frame begins).
    end_frame: int
    reason: EndReason
    #: Frames scored as speech (>= 0.5) inside the utterance.
    speech_frames: int


Event = UtteranceStarted | UtteranceEnded


class Endpointer:
    """Turns frame scores into utterance start and end events, frame by frame."""

    def __init__(self, endpoint_frames: int, max_frames: int, min_cut_frames: int) -> None:
        if endpoint_frames < 1 or max_frames < 2 or not 0 < min_cut_frames <= max_frames:
            raise ValueError("endpointing needs endpoint_frames >= 1, 0 < min_cut <= max")
        self.endpoint_frames = endpoint_frames
        self.max_frames = max_frames
        self.min_cut_frames = min_cut_frames
        self.frames = 0
        self._start: int | None = None
        self._pause_start: int | None = None
        #: One past the latest frame scored as speech (0 before any).
        self.last_speech_end = 0
        #: Scores since the current utterance started (for cutting at pauses).
        self._scores: list[float] = []

    @classmethod
    def for_settings(
        cls, endpoint_silence_ms: int, max_utterance_s: float, min_cut_s: float = 15.0
    ) -> Endpointer:
        frame_ms = 1000.0 * FRAME_SAMPLES / SAMPLE_RATE
        max_frames = int(max_utterance_s * SAMPLE_RATE) // FRAME_SAMPLES
        return cls(
            endpoint_frames=max(1, round(endpoint_silence_ms / frame_ms)),
            max_frames=max_frames,
            min_cut_frames=min(max_frames, int(min_cut_s * SAMPLE_RATE) // FRAME_SAMPLES),
        )

    @property
    def in_utterance(self) -> bool:
        return self._start is not None

    @property
    def utterance_start(self) -> int | None:
        return self._start

    @property
    def pause_start(self) -> int | None:
        """The first frame of the pause the current utterance is in, if it is in one."""
        return self._pause_start

    @property
    def speech_end(self) -> int:
        """Where the current utterance's speech ends so far (the open pause is not speech)."""
        return self._pause_start if self._pause_start is not None else self.frames

    def push(self, scores: np.ndarray) -> list[Event]:
        """Events caused by the next frames' scores, in order."""
        events: list[Event] = []
        for score in np.asarray(scores, np.float32).reshape(-1):
            self._push_one(float(score), events)
        return events

    def finish(self) -> list[UtteranceEnded]:
        """The stream ended: closes an open utterance at the end of its speech."""
        if self._start is None:
            return []
        return [self._end(self.speech_end, EndReason.END_OF_STREAM)]

    def _push_one(self, score: float, events: list[Event]) -> None:
        frame = self.frames
        self.frames += 1
        if score >= SPEECH_THRESHOLD:
            self.last_speech_end = self.frames
        if self._start is None:
            if score >= SPEECH_THRESHOLD:
                self._begin(frame)
                self._scores.append(score)
                events.append(UtteranceStarted(frame))
            return
        self._scores.append(score)
        if score >= SPEECH_THRESHOLD:
            self._pause_start = None
        elif score < PAUSE_THRESHOLD and self._pause_start is None:
            self._pause_start = frame
        pause = self._pause_start
        if pause is not None and self.frames - pause >= self.endpoint_frames:
            events.append(self._end(pause, EndReason.ENDPOINT))
        elif self.frames - self._start > self.max_frames:
            self._cut(events)

    def _begin(self, frame: int) -> None:
        self._start = frame
        self._pause_start = None
        self._scores = []

    def _end(self, end_frame: int, reason: EndReason) -> UtteranceEnded:
        assert self._start is not None
        speech = sum(1 for s in self._scores[: end_frame - self._start] if s >= SPEECH_THRESHOLD)
        event = UtteranceEnded(self._start, end_frame, reason, speech)
        self._start = None
        self._pause_start = None
        self._scores = []
        return event

    def _cut(self, events: list[Event]) -> None:
        """The utterance reached the window limit: end it at its best pause, go on after."""
        assert self._start is not None
        start = self._start
        scores = np.asarray(self._scores, np.float32)
        windows = cut_at_pauses(
            len(scores) * FRAME_SAMPLES,
            scores,
            max_window_s=self.max_frames * FRAME_SAMPLES / SAMPLE_RATE,
            min_window_s=self.min_cut_frames * FRAME_SAMPLES / SAMPLE_RATE,
        )
        cut = start + max(1, min(windows[0].end // FRAME_SAMPLES, len(scores)))
        rest = self._scores[cut - start :]
        events.append(self._end(cut, EndReason.WINDOW_LIMIT))
        # The speech after the cut goes on as the next utterance.
        self._begin(cut)
        self._scores = rest
        events.append(UtteranceStarted(cut))
        pause = None
        for offset, score in enumerate(rest):
            if score >= SPEECH_THRESHOLD:
                pause = None
            elif score < PAUSE_THRESHOLD and pause is None:
                pause = cut + offset
        self._pause_start = pause
