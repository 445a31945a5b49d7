"""Windowing: cutting rules (synthetic VAD scores), packing, time maps, and the real Silero
VAD on real recorded speech."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from stt_service.windowing import (
    SAMPLE_RATE,
    VAD_FRAME_SAMPLES,
    Window,
    cut_at_pauses,
    pack,
    plan_windows,
)
from tests.stt.media import join_with_silence

FRAMES_PER_S = SAMPLE_RATE / VAD_FRAME_SAMPLES


def _scores(seconds: float, pauses: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """Speech everywhere (0.9) except the given pauses (0.05), one score per VAD frame."""
    scores = np.full(int(np.ceil(seconds * FRAMES_PER_S)), 0.9, np.float32)
    for start, end in pauses:
        scores[int(start * FRAMES_PER_S) : int(np.ceil(end * FRAMES_PER_S))] = 0.05
    return scores


def _assert_tiling(windows: list[Window], total: int, max_s: float = 30.0) -> None:
    assert windows[0].start == 0 and windows[-1].end == total
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start
    assert all(0 < w.end - w.start <= max_s * SAMPLE_RATE for w in windows)


def test_no_pause_means_hard_cuts_at_30_s():
    total = 70 * SAMPLE_RATE
    windows = cut_at_pauses(total, _scores(70))
    _assert_tiling(windows, total)
    assert [w.start for w in windows] == [0, 30 * SAMPLE_RATE, 60 * SAMPLE_RATE]
    assert all(w.has_speech for w in windows)


def test_cut_falls_in_the_middle_of_a_pause():
    total = 40 * SAMPLE_RATE
    windows = cut_at_pauses(total, _scores(40, [(22.0, 23.0)]))
    _assert_tiling(windows, total)
    assert len(windows) == 2
    assert windows[0].end / SAMPLE_RATE == pytest.approx(22.5, abs=0.05)


def test_longest_pause_wins_and_later_wins_a_tie():
    total = 45 * SAMPLE_RATE
    longest = cut_at_pauses(total, _scores(45, [(17.0, 18.5), (25.0, 25.5)]))
    assert longest[0].end / SAMPLE_RATE == pytest.approx(17.75, abs=0.05)
    tie = cut_at_pauses(total, _scores(45, [(17.0, 18.0), (25.0, 26.0)]))
    assert tie[0].end / SAMPLE_RATE == pytest.approx(25.5, abs=0.05)


def test_pauses_too_early_are_ignored():
    # A cut at 5 s would cost a whole extra window; the search starts at 15 s.
    total = 40 * SAMPLE_RATE
    windows = cut_at_pauses(total, _scores(40, [(5.0, 7.0)]))
    assert windows[0].end == 30 * SAMPLE_RATE


def test_silent_windows_are_marked():
    total = 65 * SAMPLE_RATE
    scores = _scores(65, [(28.0, 65.0)])
    windows = cut_at_pauses(total, scores)
    _assert_tiling(windows, total)
    assert windows[0].has_speech
    assert not windows[-1].has_speech


def test_every_window_stays_within_the_limit_for_long_audio():
    total = 600 * SAMPLE_RATE
    rng = np.random.default_rng(7)
    pauses = [(s, s + 0.4) for s in np.sort(rng.uniform(0, 600, 40))]
    windows = cut_at_pauses(total, _scores(600, pauses))
    _assert_tiling(windows, total)
    assert len(windows) <= 600 / 15 + 1


def test_short_audio_is_one_window(speech_clips):
    clip = speech_clips[0].samples
    assert plan_windows(clip) == [Window.whole(0, len(clip))]


def test_silence_is_one_window_without_speech():
    assert plan_windows(np.zeros(5 * SAMPLE_RATE, np.float32)) == [
        Window.whole(0, 5 * SAMPLE_RATE, has_speech=False)
    ]
    assert plan_windows(np.zeros(0, np.float32)) == []


def test_packing_keeps_order_joins_touching_chunks_and_respects_the_limit():
    s = SAMPLE_RATE
    chunks = [(0, 10 * s), (10 * s, 12 * s), (14 * s, 25 * s), (27 * s, 40 * s), (41 * s, 44 * s)]
    windows = pack(chunks)
    assert [w.spans for w in windows] == [
        ((0, 12 * s), (14 * s, 25 * s)),
        ((27 * s, 40 * s), (41 * s, 44 * s)),
    ]
    assert all(w.length <= 30 * s for w in windows)
    with pytest.raises(ValueError, match="longer than a window"):
        pack([(0, 31 * s)])


def test_window_times_map_back_to_the_recording():
    s = SAMPLE_RATE
    window = Window(((2 * s, 5 * s), (9 * s, 10 * s)))
    assert window.duration_s == 4.0 and window.offset_s == 2.0
    assert window.absolute_s(0.0) == 2.0
    assert window.absolute_s(1.5) == 3.5
    # The seam at 3 s: an end belongs to the first span, a start to the second.
    assert window.absolute_s(3.0) == 5.0
    assert window.absolute_s(3.0, is_start=True) == 9.0
    assert window.absolute_s(3.5) == 9.5
    assert window.absolute_s(9.0) == 10.0  # past the end: clamped
    rest = window.after(2.5)  # from 4.5 s in the recording
    assert rest.spans == ((int(4.5 * s), 5 * s), (9 * s, 10 * s))
    assert window.after(3.2).spans == ((int(9.2 * s), 10 * s),)
    with pytest.raises(ValueError, match="past the end"):
        window.after(4.0)
    samples = np.arange(11 * s, dtype=np.float32)
    np.testing.assert_array_equal(
        window.take(samples), np.concatenate([samples[2 * s : 5 * s], samples[9 * s : 10 * s]])
    )


def test_long_recordings_leave_long_silences_out(speech_clips):
    clips = [c.samples for c in speech_clips[:5]] * 2  # about 66 s with the silences
    audio, spans = join_with_silence(clips, gap_s=2.0)
    windows = plan_windows(audio)
    assert len(windows) >= 2
    assert all(w.has_speech and w.length <= 30 * SAMPLE_RATE for w in windows)
    kept = [span for w in windows for span in w.spans]
    for (_, end_before), (start_after, _) in itertools.pairwise(kept):
        assert end_before <= start_after  # in order, never overlapping
    # Every clip's speech is inside some kept span...
    for clip_start, clip_end in spans:
        middle = int((clip_start + clip_end) / 2 * SAMPLE_RATE)
        assert any(a <= middle < b for a, b in kept)
    # ...and most of each 2 s silence is not (0.4 s of context is kept either side).
    for (_, gap_start), (gap_end, _) in itertools.pairwise(spans):
        middle = int((gap_start + gap_end) / 2 * SAMPLE_RATE)
        assert not any(a <= middle < b for a, b in kept)
