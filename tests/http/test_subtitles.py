"""SRT and WebVTT from transcript segments (speech_client.subtitles)."""

from __future__ import annotations

from speech_client.subtitles import Cue, timestamp, to_srt, to_vtt


def test_timestamps_carry_hours_and_round_to_the_millisecond():
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(3723.0044, ".") == "01:02:03.004"
    assert timestamp(59.9996, ",") == "00:01:00,000"
    assert timestamp(-0.2, ",") == "00:00:00,000"


def test_srt_numbers_cues_and_skips_empty_text():
    srt = to_srt([Cue(0.0, 1.2, " Hello."), Cue(1.2, 2.0, "  "), Cue(2.0, 3.5, "World")])
    assert srt == (
        "1\n00:00:00,000 --> 00:00:01,200\nHello.\n\n"
        "2\n00:00:02,000 --> 00:00:03,500\nWorld\n"
    )


def test_vtt_has_its_header_and_escapes_markup():
    vtt = to_vtt([Cue(1.0, 0.5, "a <b> & c\n\nd")])
    # An end before the start is clamped; a blank line inside a cue would end it.
    assert vtt == "WEBVTT\n\n00:00:01.000 --> 00:00:01.000\na &lt;b&gt; &amp; c\nd\n"


def test_no_cues():
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"
