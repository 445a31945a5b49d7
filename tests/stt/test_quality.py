"""stt_service.quality's loop test on transcripts built by hand: whether a real decode loops
depends on the CPU (tests/stt/test_voice_agent.py), what is flagged once it does must not."""

from __future__ import annotations

from stt_service.assembly import Transcript, TranscriptSegment
from stt_service.quality import assess

PHRASE = " Go forward ten meters."


def _transcript(texts: list[str], seconds_each: float) -> Transcript:
    segments = [
        TranscriptSegment(i, i * seconds_each, (i + 1) * seconds_each, text, -0.3, 0.01)
        for i, text in enumerate(texts)
    ]
    return Transcript(text="".join(texts).strip(), segments=segments)


def _speech(transcript: Transcript) -> dict[int, list[tuple[float, float]]]:
    return {0: [(0.0, transcript.segments[-1].end_seconds)]}


def test_one_segment_that_repeats_itself_is_a_loop():
    looping = _transcript([PHRASE * 17], 30.0)
    report = assess(looping, _speech(looping))
    assert [span.text for span in report.repetition_loops] == [PHRASE * 17]
    assert report.repetition_loops[0].value > 2.4 and report.doubtful


def test_short_segments_that_repeat_within_30_s_are_a_loop_together():
    looping = _transcript([PHRASE] * 12, 2.5)  # each segment alone compresses like prose
    report = assess(looping, _speech(looping))
    assert len(report.repetition_loops) == 1
    assert report.repetition_loops[0].start_seconds == 0.0
    assert report.repetition_loops[0].end_seconds == 30.0


def test_ordinary_speech_is_not_a_loop():
    prose = [
        " The interview starts at nine in the morning.",
        " Please bring a copy of your resume and two references.",
        " We will talk about your last role and what you want next.",
    ]
    transcript = _transcript(prose, 4.0)
    report = assess(transcript, _speech(transcript))
    assert not report.repetition_loops and not report.doubtful
