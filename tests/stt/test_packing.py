"""Packing short windows into one: planning, layout, and giving segments back to items."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest
import pytest_asyncio

from batcher import RequestCancelled
from speech_platform.config import SttBatcherSettings, SttSettings
from speech_platform.errors import InvalidArgument
from stt_service.assets import model_path
from stt_service.options import DecodeOptions, TranscribeOptions
from stt_service.packing import (
    Bin,
    PackingPolicy,
    Placement,
    lay_out,
    owner_of,
    plan_bins,
    split_segments_by_item,
)
from stt_service.transcriber import Transcriber
from stt_service.whisper_engine import (
    DecodedSegment,
    DecodedWord,
    EngineConfig,
    WhisperEngine,
    WindowItem,
    WindowResult,
)
from tests.stt.media import join_with_silence, wer

POLICY = PackingPolicy(max_item_seconds=10.0, gap_seconds=1.0, max_window_seconds=29.0)


def segment(start: float, end: float, text: str, *words: DecodedWord) -> DecodedSegment:
    return DecodedSegment(start, end, text, avg_logprob=-0.2, no_speech_prob=0.01, words=words)


def word(text: str, start: float, end: float) -> DecodedWord:
    return DecodedWord(text, start, end, probability=0.9)


# ---------------------------------------------------------------------- planning


def test_items_with_the_same_key_share_a_bin_in_arrival_order_with_gaps():
    bins = plan_bins([4.0, 3.0, 5.0], ["en", "en", "en"], POLICY)
    assert bins == [Bin((Placement(0, 0.0, 4.0), Placement(1, 5.0, 3.0), Placement(2, 9.0, 5.0)))]
    assert bins[0].duration == pytest.approx(14.0)


def test_bins_never_exceed_the_window_and_a_full_bin_opens_another():
    bins = plan_bins([9.0, 9.0, 9.0, 9.0, 9.0], ["k"] * 5, POLICY)
    # 9 + 1 + 9 + 1 + 9 = 29 fits; the rest start a new bin.
    assert [[p.index for p in b.placements] for b in bins] == [[0, 1, 2], [3, 4]]
    assert all(b.duration <= POLICY.max_window_seconds for b in bins)


def test_first_fit_fills_an_earlier_bin_when_a_later_item_fits():
    bins = plan_bins([9.0, 9.0, 9.5, 2.0], ["k"] * 4, POLICY)
    # Item 2 (9.5 s) would end at 29.5 s, so it opens a bin; item 3 still fits the first.
    assert [[p.index for p in b.placements] for b in bins] == [[0, 1, 3]]


def test_incompatible_long_unknown_and_lonely_items_are_not_packed():
    keys: list[object] = ["en", "de", "en", None, "en", "de"]
    durations = [3.0, 3.0, 12.0, 3.0, 4.0, 2.0]
    bins = plan_bins(durations, keys, POLICY)
    assert sorted([p.index for p in b.placements] for b in bins) == [[0, 4], [1, 5]]
    assert plan_bins([3.0], ["en"], POLICY) == []
    assert plan_bins([3.0, 3.0], ["en", "fr"], POLICY) == []


def test_policy_rejects_impossible_limits():
    with pytest.raises(ValueError):
        PackingPolicy(max_item_seconds=40.0, max_window_seconds=45.0)
    with pytest.raises(ValueError):
        PackingPolicy(gap_seconds=-1.0)


# ---------------------------------------------------------------------- layout


def test_lay_out_puts_each_item_at_its_offset_with_silence_between():
    rate = 100
    a = np.full(200, 0.5, dtype=np.float32)
    b = np.full(150, -0.25, dtype=np.float32)
    packed = Bin((Placement(0, 0.0, 2.0), Placement(1, 2.5, 1.5)))
    audio = lay_out([a, b], packed, sample_rate=rate)
    assert audio.dtype == np.float32
    assert len(audio) == 400
    np.testing.assert_array_equal(audio[:200], a)
    assert not audio[200:250].any()
    np.testing.assert_array_equal(audio[250:400], b)


# ---------------------------------------------------------------------- splitting

PACKED = Bin((Placement(7, 0.0, 4.0), Placement(3, 5.0, 3.0), Placement(9, 9.0, 5.0)))


def test_segments_inside_items_are_shifted_to_each_items_origin():
    segments = [
        segment(0.2, 3.8, " Hello there.", word("Hello", 0.2, 0.9), word("there.", 1.0, 3.8)),
        segment(5.4, 7.5, " Go forward.", word("Go", 5.4, 6.0), word("forward.", 6.1, 7.5)),
        segment(9.1, 13.0, " Last one.", word("Last", 9.1, 9.6), word("one.", 9.7, 13.0)),
    ]
    report = split_segments_by_item(segments, PACKED)
    assert report.straddling == 0
    first, second, third = (item.segments for item in report.per_item)
    assert [s.text for s in first] == [" Hello there."]
    assert second[0].start == pytest.approx(0.4) and second[0].end == pytest.approx(2.5)
    assert [(w.word, w.start, w.end) for w in second[0].words] == [
        ("Go", 0.4, 1.0),
        ("forward.", 1.1, 2.5),
    ]
    assert third[0].start == pytest.approx(0.1) and third[0].end == pytest.approx(4.0)
    assert [item.text_end for item in report.per_item] == pytest.approx([3.8, 2.5, 4.0])
    # Scores are kept.
    assert second[0].avg_logprob == -0.2 and second[0].no_speech_prob == 0.01


def test_a_segment_straddling_a_boundary_is_cut_at_its_words():
    straddling = segment(
        2.0,
        6.5,
        " end of one. Start of two",
        word("end", 2.0, 2.4),
        word("of", 2.5, 2.7),
        word("one.", 2.8, 3.5),
        word("Start", 5.2, 5.6),
        word("of", 5.7, 5.9),
        word("two", 6.0, 6.5),
    )
    report = split_segments_by_item([straddling], PACKED)
    assert report.straddling == 1
    (first,) = report.per_item[0].segments
    (second,) = report.per_item[1].segments
    assert first.text == " end of one." and (first.start, first.end) == (2.0, 3.5)
    assert second.text == " Start of two"
    assert (second.start, second.end) == pytest.approx((0.2, 1.5))
    assert report.per_item[2].segments == []
    assert report.per_item[2].text_end is None


def test_a_word_in_a_gap_goes_to_the_nearer_item_and_times_stay_inside_it():
    # 4.2-4.4 lies in the gap [4, 5], nearer item 0; 4.7-5.3 has its midpoint in item 1.
    seg = segment(3.0, 5.3, " a b c", word("a", 3.0, 3.9), word("b", 4.2, 4.4), word("c", 4.7, 5.3))
    report = split_segments_by_item([seg], PACKED)
    first, second = report.per_item[0].segments, report.per_item[1].segments
    assert [w.word for w in first[0].words] == ["a", "b"]
    assert first[0].words[-1].start == 4.0 and first[0].words[-1].end == 4.0  # clamped
    assert [(w.word, w.start, w.end) for w in second[0].words] == [("c", 0.0, 0.3)]


def test_without_words_a_segment_goes_to_the_item_it_overlaps_most():
    segments = [
        segment(0.5, 3.0, " only first"),
        segment(3.5, 7.0, " mostly second"),  # 0.5 s in item 0, 2 s in item 1
        segment(8.4, 8.9, " in the gap"),  # nearer item 2 (starts at 9)
    ]
    report = split_segments_by_item(segments, PACKED)
    assert report.straddling == 1
    assert [s.text for s in report.per_item[0].segments] == [" only first"]
    (second,) = report.per_item[1].segments
    assert second.text == " mostly second"
    assert (second.start, second.end) == (0.0, 2.0)
    (third,) = report.per_item[2].segments
    assert (third.start, third.end) == (0.0, 0.0)


def test_unspaced_languages_rebuild_cut_text_without_spaces():
    seg = segment(3.0, 6.0, "你好世界", word("你好", 3.0, 3.5), word("世界", 5.2, 6.0))
    report = split_segments_by_item([seg], PACKED, language="zh")
    assert report.per_item[0].segments[0].text == "你好"
    assert report.per_item[1].segments[0].text == "世界"


def test_owner_of_prefers_the_item_holding_the_moment():
    assert owner_of(0.0, PACKED) == 0
    assert owner_of(5.0, PACKED) == 1
    assert owner_of(8.9, PACKED) == 2
    assert owner_of(20.0, PACKED) == 2


# ---------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def packing_engine() -> WhisperEngine:
    return WhisperEngine(EngineConfig(model_path("tiny.en"), pack_short_windows=True))


def _text(result: WindowResult) -> str:
    return " ".join(s.text.strip() for s in result.segments)


@pytest.mark.slow
def test_one_packed_window_serves_several_items_and_keeps_bad_ones_apart(
    packing_engine, speech_clips
):
    english = DecodeOptions("en", beam_size=5)
    withdrawn = speech_clips[0]
    items = [
        WindowItem(c.samples, replace(english, word_timestamps=k % 2 == 0))
        for k, c in enumerate(speech_clips)
    ]
    items.append(WindowItem(withdrawn.samples, english, should_decode=lambda: False))
    items.append(WindowItem(np.zeros(0, np.float32), english))
    before = packing_engine.windows_encoded
    results = packing_engine.run_batch(items)

    assert isinstance(results[-2], RequestCancelled)
    assert isinstance(results[-1], InvalidArgument)
    rates = []
    for k, (clip, result) in enumerate(zip(speech_clips, results, strict=False)):
        assert isinstance(result, WindowResult), result
        rates.append(wer(clip.reference, _text(result)))
        for seg in result.segments:
            assert 0.0 <= seg.start <= seg.end <= clip.duration_s
            assert bool(seg.words) == (k % 2 == 0)  # words only where they were asked
            for w in seg.words:
                assert 0.0 <= w.start <= w.end <= clip.duration_s
        assert result.text_end is not None and result.text_end <= clip.duration_s
    print("packed engine WER per clip:", [round(r, 3) for r in rates])
    assert sum(rates) / len(rates) <= 0.15
    # Six clips (3-7 s) fit two 26 s windows; unpacked they would take six.
    encoded = packing_engine.windows_encoded - before
    assert encoded < len(speech_clips) // 2


@pytest_asyncio.fixture(scope="module")
async def packing_transcriber():
    settings = SttSettings(
        models=["tiny.en"],
        instances=1,
        cpu_threads=2,
        pack_short_windows=True,
        batcher=SttBatcherSettings(max_batch_size=8, max_queue_delay_ms=10, max_queue_size=64),
    )
    transcriber = Transcriber(settings)
    await transcriber.start()
    yield transcriber
    await transcriber.stop(10.0)


@pytest.mark.slow
async def test_concurrent_requests_each_get_their_own_transcript(packing_transcriber, speech_clips):
    pairs = [
        join_with_silence([speech_clips[1].samples, speech_clips[5].samples], gap_s=0.3),
        join_with_silence([speech_clips[4].samples, speech_clips[2].samples], gap_s=0.3),
    ]
    requests = [(c.samples, c.reference) for c in speech_clips] + [
        (audio, f"{speech_clips[a].reference} {speech_clips[b].reference}")
        for (audio, _), (a, b) in zip(pairs, [(1, 5), (4, 2)], strict=True)
    ]
    requests = requests + requests[::-1]  # 16 requests, identical clips not side by side
    model = packing_transcriber.model()
    engines = model.engines
    windows_before = sum(e.windows_encoded for e in engines)
    packed_before = sum(e.items_packed for e in engines)
    batches_before = sum(model.observer.batch_sizes.values())

    responses = await asyncio.gather(
        *(
            packing_transcriber.transcribe(audio, TranscribeOptions(word_timestamps=True))
            for audio, _ in requests
        )
    )

    rates = [wer(ref, r.text) for (_, ref), r in zip(requests, responses, strict=True)]
    print("packed transcriber WER per request:", [round(r, 3) for r in rates])
    assert sum(rates) / len(rates) <= 0.15
    for (audio, _), response in zip(requests, responses, strict=True):
        duration = len(audio) / 16000
        assert response.segments and response.words, "every request has speech"
        for timed in [*response.segments, *response.words]:
            assert 0.0 <= timed.start_seconds <= timed.end_seconds <= duration + 1e-3
    # Each pair's second clip is heard where it lies in that request's own audio.
    for k, ((_audio, spans), marker) in enumerate(zip(pairs, ["forward", "selfish"], strict=True)):
        response = responses[len(speech_clips) + k]
        (hit,) = [w for w in response.words if marker in w.word.lower()]
        second_start, second_end = spans[1]
        assert second_start - 0.5 <= hit.start_seconds <= second_end
    windows = sum(e.windows_encoded for e in engines) - windows_before
    packed = sum(e.items_packed for e in engines) - packed_before
    batches = sum(model.observer.batch_sizes.values()) - batches_before
    print(f"{len(requests)} requests: {batches} batches, {windows} windows, {packed} packed")
    assert packed > 0
    assert windows < len(requests)
