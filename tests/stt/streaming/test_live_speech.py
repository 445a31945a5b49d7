"""Real recorded speech streamed like a live microphone through the real server: interim
results while each sentence is spoken, one final per sentence, times relative to the
stream start, in LINEAR16 16 kHz (odd-sized chunks) and MULAW 8 kHz (telephony)."""

from __future__ import annotations

import pytest

from tests.stt.streaming.speech import (
    MULAW,
    Received,
    SpokenStream,
    collect,
    finals,
    join_clips,
    microphone,
    normalise,
    streaming_config,
    word_error_rate,
)
from tests.support.server import RunningServer, metric_samples


def check_stream(received: list[Received], spoken: SpokenStream) -> None:
    """The properties every stream of clips separated by 1 s pauses must have."""
    results = [r.response for r in received]
    final_results = finals(received)
    assert len(final_results) == len(spoken.references), [r.text for r in final_results]
    assert word_error_rate(spoken.references, [r.text for r in final_results]) <= 0.2
    assert [r.utterance_index for r in final_results] == list(range(len(spoken.references)))
    # Results come in utterance order, and every final is preceded by interims of its own
    # utterance (the speaker is still talking while they arrive).
    indexes = [r.utterance_index for r in results]
    assert indexes == sorted(indexes)
    for index in range(len(spoken.references)):
        own = [r for r in results if r.utterance_index == index]
        assert own[-1].is_final and not any(r.is_final for r in own[:-1])
        interims = own[:-1]
        assert interims, f"no interim result before final {index}"
        assert all(0.0 <= r.stability <= 1.0 and r.text for r in interims)
    for final, (start_s, end_s) in zip(final_results, spoken.spans, strict=True):
        assert final.stability == 1.0 and final.model == "tiny.en"
        assert final.language_code == "en"
        # Times are relative to the stream start: each final lies on its own clip.
        assert start_s - 0.35 <= final.start_seconds < final.end_seconds <= end_s + 0.35
        assert final.segments and final.words
        for segment in final.segments:
            assert start_s - 0.35 <= segment.start_seconds <= segment.end_seconds <= end_s + 0.4
        starts = [w.start_seconds for w in final.words]
        assert starts == sorted(starts)
        assert start_s - 0.35 <= starts[0] and final.words[-1].end_seconds <= end_s + 0.4
    segment_ids = [s.id for r in final_results for s in r.segments]
    assert segment_ids == list(range(len(segment_ids)))


async def test_live_linear16_and_mulaw_streams_transcribe_each_sentence(
    stt_server: RunningServer,
    spoken: SpokenStream,
    librivox_pcm: list,
) -> None:
    phone = join_clips(librivox_pcm[2:4], pause_s=1.0)
    before = await stt_server.metrics_text()
    async with stt_server.channel() as channel:
        # 100 ms chunks of 3203 bytes: odd counts, so samples straddle chunks.
        received_16k = await collect(
            channel,
            microphone(
                streaming_config(interim_interval_ms=500),
                spoken.linear16(),
                bytes_per_second=32000,
                chunk_bytes=3203,
            ),
        )
        # 20 ms telephony frames of G.711 mu-law at 8 kHz.
        received_8k = await collect(
            channel,
            microphone(
                streaming_config(MULAW, 8000, interim_interval_ms=500),
                phone.mulaw_8k(),
                bytes_per_second=8000,
                chunk_bytes=160,
            ),
        )
    check_stream(received_16k, spoken)
    check_stream(received_8k, phone)
    after = await stt_server.metrics_text()

    def delta(name: str) -> float:
        return metric_samples(after, name) - metric_samples(before, name)

    sent_finals = len(finals(received_16k)) + len(finals(received_8k))
    sent_interims = len(received_16k) + len(received_8k) - sent_finals
    assert delta("speech_stt_stream_final_latency_seconds_count") == sent_finals
    assert delta("speech_stt_stream_interim_latency_seconds_count") == sent_interims
    assert metric_samples(after, "speech_stt_streams_active") == 0


async def test_interim_results_can_be_turned_off(
    stt_server: RunningServer, librivox_pcm: list
) -> None:
    two = join_clips(librivox_pcm[3:5], pause_s=1.0)
    async with stt_server.channel() as channel:
        received = await collect(
            channel,
            microphone(
                streaming_config(interim_results=False, words=False),
                two.linear16(),
                bytes_per_second=32000 * 4,  # four times real time: nothing waits for it
                chunk_bytes=6400,
            ),
        )
    results = [r.response for r in received]
    assert results and all(r.is_final for r in results)
    assert len(results) == 2
    assert word_error_rate(two.references, [r.text for r in results]) <= 0.2
    assert not any(r.words for r in results)


async def test_half_close_in_mid_sentence_finalises_what_was_heard(
    stt_server: RunningServer, librivox_pcm: list
) -> None:
    pcm, _ = librivox_pcm[0]  # "and mister john dashwood had then leisure to consider ..."
    audio = pcm[: 16000 * 3].astype("<i2").tobytes()  # stop three seconds in, mid-sentence
    async with stt_server.channel() as channel:
        received = await collect(
            channel,
            microphone(
                streaming_config(interim_results=False),
                audio,
                bytes_per_second=32000 * 4,
                chunk_bytes=3200,
            ),
        )
    (final,) = [r.response for r in received]
    assert final.is_final
    assert normalise(final.text).startswith("and mister john dashwood")
    assert final.end_seconds <= 3.0 + 1e-3


async def test_silence_alone_gives_no_result(stt_server: RunningServer) -> None:
    silence = bytes(32000 * 3)
    async with stt_server.channel() as channel:
        received = await collect(
            channel,
            microphone(streaming_config(), silence, bytes_per_second=32000 * 8, chunk_bytes=3200),
        )
    assert received == []


async def test_an_utterance_longer_than_a_window_is_cut_at_a_pause(
    stt_server: RunningServer, librivox_pcm: list
) -> None:
    # About 37 s of speech whose pauses (0.4 s) never reach the 2 s endpoint silence.
    talk = join_clips(librivox_pcm + librivox_pcm[:2], pause_s=0.4)
    assert talk.duration_s > 35
    async with stt_server.channel() as channel:
        received = await collect(
            channel,
            microphone(
                streaming_config(interim_results=False, endpoint_silence_ms=2000),
                talk.linear16(),
                bytes_per_second=32000 * 8,
                chunk_bytes=32000,
            ),
        )
    results = [r.response for r in received]
    assert len(results) == 2 and all(r.is_final for r in results)
    first, second = results
    assert 15.0 <= first.end_seconds - first.start_seconds <= 30.0
    # The cut lies in a pause between sentences, and the second utterance starts there.
    cut = first.end_seconds
    assert not any(start + 0.05 < cut < end - 0.05 for start, end in talk.spans)
    assert second.start_seconds == pytest.approx(cut, abs=0.001)
    assert word_error_rate(talk.references, [first.text, second.text]) <= 0.2
