"""A per-response quality report: can the caller trust this transcript?

Whisper fails in a few recognisable ways: it invents text on noise or silence ("Thank you."),
it loops on one phrase, it drops speech, and it decodes unlikely text. The report measures
each against what is known independently of the decode:

- **coverage**: the bundled Silero VAD (faster-whisper's ``get_speech_timestamps``) says
  where speech is; the report counts the seconds of speech that lie inside transcript
  segments, the seconds of transcript where the VAD heard no speech, and lists stretches of
  speech with no transcript at all;
- **repetition loops**: the engine's own test for its fallback (gzip compression ratio of
  the text above 2.4, stt_service/whisper_engine.py), applied to each segment and to the
  text of every 30 s of transcript (a loop of short segments passes the test one by one);
- **low confidence**: segments whose mean log-probability is below the engine's floor, and
  words (when word offsets were asked for) below a probability threshold.

It costs one VAD pass over the audio (per channel with per-channel recognition), so it is
opt-in (RecognitionConfig.enable_quality_report) and runs in a worker thread; its cost is
in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from speech.v1 import stt_pb2
from stt_service.whisper_engine import COMPRESSION_RATIO_LIMIT, LOGPROB_FLOOR, compression_ratio

if TYPE_CHECKING:
    from stt_service.assembly import Transcript, TranscriptSegment

SAMPLE_RATE = 16000
#: The engine's own limits: its repetition test and its log-probability floor, beyond
#: which it decodes a window again with its fallback.
REPETITION_RATIO = COMPRESSION_RATIO_LIMIT
SEGMENT_LOGPROB_FLOOR = LOGPROB_FLOOR
#: Words below this probability are listed as low-confidence spans (not doubt by themselves).
WORD_PROBABILITY_FLOOR = 0.4
#: Transcript time spans the repetition test looks at together (Whisper's window).
REPETITION_SPAN_S = 30.0
#: Slack around speech and segments: VAD edges and segment times disagree by this much.
SLACK_S = 0.3
#: Speech with no transcript, at least this long, is listed as untranscribed.
MIN_UNTRANSCRIBED_S = 1.0
#: The report is doubtful below this coverage, or with more text without speech than this.
MIN_COVERAGE = 0.8
MAX_TEXT_WITHOUT_SPEECH_S = 1.0
#: Less speech than this counts as none (coverage is then 1 without text, 0 with).
MIN_SPEECH_S = 0.25
#: Silero settings: pauses of half a second split speech; a little padding either side.
_VAD_THRESHOLD = 0.5
_VAD_MIN_SILENCE_MS = 500
_VAD_PAD_MS = 100

Interval = tuple[float, float]


@dataclass(frozen=True)
class QualitySpan:
    start_seconds: float
    end_seconds: float
    #: The segment's avg_logprob, the word's probability or the text's compression ratio.
    value: float = 0.0
    text: str = ""
    channel_tag: int = 0

    def to_proto(self) -> stt_pb2.QualitySpan:
        return stt_pb2.QualitySpan(
            start_seconds=self.start_seconds,
            end_seconds=self.end_seconds,
            value=self.value,
            text=self.text,
            channel_tag=self.channel_tag,
        )

    @classmethod
    def from_proto(cls, span: stt_pb2.QualitySpan) -> QualitySpan:
        return cls(span.start_seconds, span.end_seconds, span.value, span.text, span.channel_tag)


@dataclass
class QualityReport:
    speech_seconds: float = 0.0
    covered_speech_seconds: float = 0.0
    coverage: float = 1.0
    text_without_speech_seconds: float = 0.0
    untranscribed_speech: list[QualitySpan] = field(default_factory=list)
    repetition_loops: list[QualitySpan] = field(default_factory=list)
    low_confidence: list[QualitySpan] = field(default_factory=list)
    doubtful: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_proto(self) -> stt_pb2.QualityReport:
        return stt_pb2.QualityReport(
            speech_seconds=self.speech_seconds,
            covered_speech_seconds=self.covered_speech_seconds,
            coverage=self.coverage,
            text_without_speech_seconds=self.text_without_speech_seconds,
            untranscribed_speech=[s.to_proto() for s in self.untranscribed_speech],
            repetition_loops=[s.to_proto() for s in self.repetition_loops],
            low_confidence=[s.to_proto() for s in self.low_confidence],
            doubtful=self.doubtful,
            reasons=list(self.reasons),
        )

    @classmethod
    def from_proto(cls, report: stt_pb2.QualityReport) -> QualityReport:
        return cls(
            report.speech_seconds,
            report.covered_speech_seconds,
            report.coverage,
            report.text_without_speech_seconds,
            [QualitySpan.from_proto(s) for s in report.untranscribed_speech],
            [QualitySpan.from_proto(s) for s in report.repetition_loops],
            [QualitySpan.from_proto(s) for s in report.low_confidence],
            report.doubtful,
            list(report.reasons),
        )


def speech_intervals(samples: np.ndarray) -> list[Interval]:
    """Where the Silero VAD hears speech in 16 kHz mono ``samples``, in seconds (CPU
    bound: call it from a worker thread)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # imports onnxruntime

    options = VadOptions(
        threshold=_VAD_THRESHOLD,
        min_silence_duration_ms=_VAD_MIN_SILENCE_MS,
        speech_pad_ms=_VAD_PAD_MS,
    )
    found = get_speech_timestamps(np.asarray(samples, dtype=np.float32), options)
    return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in found]


def assess(
    transcript: Transcript, speech_by_channel: Mapping[int, list[Interval]]
) -> QualityReport:
    """The report for ``transcript``, given where the VAD heard speech (``speech_intervals``)
    on each channel: one entry tagged 0 for mixed-down audio, one per channel tag with
    per-channel recognition. Cheap (interval arithmetic); the VAD pass is the cost."""
    report = QualityReport()
    covered = without_speech = 0.0
    unlikely_segments = 0
    for tag, speech in speech_by_channel.items():
        segments = [s for s in transcript.segments if s.channel_tag == tag]
        spans = [(s.start_seconds, s.end_seconds) for s in segments]
        report.speech_seconds += _length(speech)
        covered += _length(_intersect(speech, _widen(spans)))
        without_speech += _length(_subtract(_merge(spans), _widen(speech)))
        report.untranscribed_speech += [
            QualitySpan(round(a, 3), round(b, 3), channel_tag=tag)
            for a, b in _subtract(speech, _widen(spans))
            if b - a >= MIN_UNTRANSCRIBED_S
        ]
        report.repetition_loops += _loops(segments, tag)
        unlikely = [
            QualitySpan(s.start_seconds, s.end_seconds, s.avg_logprob, s.text, tag)
            for s in segments
            if s.avg_logprob < SEGMENT_LOGPROB_FLOOR
        ]
        unlikely_segments += len(unlikely)
        report.low_confidence += unlikely
        report.low_confidence += [
            QualitySpan(w.start_seconds, w.end_seconds, w.probability, w.word, tag)
            for w in transcript.words
            if w.channel_tag == tag and w.probability < WORD_PROBABILITY_FLOOR
        ]
    report.low_confidence.sort(key=lambda s: (s.start_seconds, s.channel_tag))
    report.covered_speech_seconds = round(covered, 3)
    report.speech_seconds = round(report.speech_seconds, 3)
    report.text_without_speech_seconds = round(without_speech, 3)
    has_text = any(s.text.strip() for s in transcript.segments)
    if report.speech_seconds >= MIN_SPEECH_S:
        report.coverage = round(min(1.0, covered / report.speech_seconds), 3)
    else:
        report.coverage = 0.0 if has_text else 1.0
    report.reasons = _reasons(report, has_text, unlikely_segments)
    report.doubtful = bool(report.reasons)
    return report


def _reasons(report: QualityReport, has_text: bool, unlikely_segments: int) -> list[str]:
    reasons = []
    if has_text and report.speech_seconds < MIN_SPEECH_S:
        reasons.append("text where the VAD hears no speech: likely invented (hallucination)")
    elif report.coverage < MIN_COVERAGE:
        reasons.append(
            f"the transcript covers {report.coverage:.0%} of the speech heard "
            f"(below {MIN_COVERAGE:.0%}): words may be missing"
        )
    if report.text_without_speech_seconds > MAX_TEXT_WITHOUT_SPEECH_S:
        reasons.append(
            f"{report.text_without_speech_seconds:.1f} s of transcript where no speech is "
            "heard: text there may be invented"
        )
    if report.repetition_loops:
        reasons.append("the text repeats itself like a decoder loop")
    if unlikely_segments:
        reasons.append(
            f"{unlikely_segments} segment(s) decoded with mean log-probability below "
            f"{SEGMENT_LOGPROB_FLOOR}"
        )
    return reasons


def _loops(segments: Sequence[TranscriptSegment], tag: int) -> list[QualitySpan]:
    """Segments, and 30 s stretches of segments, whose text compresses like a loop."""
    found: list[QualitySpan] = []
    groups: dict[int, list[TranscriptSegment]] = {}
    for segment in segments:
        ratio = compression_ratio(segment.text)
        if ratio > REPETITION_RATIO:
            found.append(
                QualitySpan(segment.start_seconds, segment.end_seconds, ratio, segment.text, tag)
            )
        groups.setdefault(int(segment.start_seconds // REPETITION_SPAN_S), []).append(segment)
    flagged = {(s.start_seconds, s.end_seconds) for s in found}
    for members in groups.values():
        if len(members) < 2:
            continue
        text = " ".join(s.text for s in members)
        ratio = compression_ratio(text)
        span = (members[0].start_seconds, members[-1].end_seconds)
        if ratio > REPETITION_RATIO and span not in flagged:
            found.append(QualitySpan(span[0], span[1], ratio, text, tag))
    return sorted(found, key=lambda s: s.start_seconds)


# ---------------------------------------------------------------------------- intervals


def _merge(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def _widen(intervals: Sequence[Interval]) -> list[Interval]:
    return _merge([(max(0.0, a - SLACK_S), b + SLACK_S) for a, b in intervals])


def _length(intervals: Sequence[Interval]) -> float:
    return sum(b - a for a, b in _merge(intervals))


def _intersect(first: Sequence[Interval], second: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a1, b1 in _merge(first):
        for a2, b2 in _merge(second):
            low, high = max(a1, a2), min(b1, b2)
            if high > low:
                out.append((low, high))
    return out


def _subtract(first: Sequence[Interval], second: Sequence[Interval]) -> list[Interval]:
    """``first`` minus ``second``.

    >>> _subtract([(0.0, 10.0)], [(2.0, 3.0), (5.0, 6.0)])
    [(0.0, 2.0), (3.0, 5.0), (6.0, 10.0)]
    """
    out: list[Interval] = []
    holes = _merge(second)
    for start, end in _merge(first):
        cursor = start
        for low, high in holes:
            if high <= cursor or low >= end:
                continue
            if low > cursor:
                out.append((cursor, low))
            cursor = max(cursor, high)
        if cursor < end:
            out.append((cursor, end))
    return out
