"""The per-chunk audio path of a stream, with real speech and the real Silero model:
byte chunks to samples, incremental VAD, and endpointing."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.vad import get_vad_model

from speech.v1 import common_pb2
from stt_service.audio import decode_audio
from stt_service.streaming.endpointing import (
    Endpointer,
    EndReason,
    UtteranceEnded,
    UtteranceStarted,
)
from stt_service.streaming.pcm import PcmChunkDecoder
from stt_service.streaming.vad import FRAME_SAMPLES, StreamingVad
from tests.stt.streaming.speech import SpokenStream, join_clips

LINEAR16 = common_pb2.AUDIO_ENCODING_LINEAR16
MULAW = common_pb2.AUDIO_ENCODING_MULAW
FRAME_S = FRAME_SAMPLES / 16000


def random_chunks(data: bytes, seed: int, largest: int = 5000) -> list[bytes]:
    """``data`` cut at random places: odd sizes, single bytes, empty chunks."""
    rng = np.random.default_rng(seed)
    chunks, offset = [], 0
    while offset < len(data):
        size = int(rng.integers(0, largest))
        chunks.append(data[offset : offset + size])
        offset += size
    return chunks


def feed_all(decoder: PcmChunkDecoder, chunks: list[bytes]) -> np.ndarray:
    pieces = [decoder.feed(chunk) for chunk in chunks] + [decoder.flush()]
    return np.concatenate(pieces)


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [(LINEAR16, 16000, 1), (LINEAR16, 8000, 1), (LINEAR16, 44100, 2), (MULAW, 8000, 1)],
)
def test_chunks_of_any_size_decode_as_the_whole(
    spoken: SpokenStream, encoding: int, rate: int, channels: int
) -> None:
    if encoding == MULAW:
        data = spoken.mulaw_8k()
    else:
        # The 16 kHz speech's samples declared at another rate (and copied to every
        # channel) are still a valid stream at that rate; it only plays faster or slower.
        pcm = spoken.pcm[: rate * 5]
        data = np.repeat(pcm, channels).astype("<i2").tobytes()
    whole = decode_audio(
        data, encoding=encoding, sample_rate_hertz=rate, audio_channel_count=channels
    ).samples
    decoder = PcmChunkDecoder(encoding, rate, channels)
    chunks = random_chunks(data, seed=rate + channels)
    assert any(len(c) % 2 for c in chunks), "the test must cut inside samples"
    incremental = feed_all(decoder, chunks)
    assert decoder.pending_bytes == 0
    assert len(incremental) == len(whole)
    np.testing.assert_allclose(incremental, whole, atol=1e-6)


def test_an_odd_byte_is_kept_for_the_next_chunk() -> None:
    decoder = PcmChunkDecoder(LINEAR16, 16000)
    sample = np.array([12345], "<i2").tobytes()
    assert len(decoder.feed(sample[:1])) == 0
    assert decoder.pending_bytes == 1
    (value,) = decoder.feed(sample[1:])
    assert value == pytest.approx(12345 / 32768)
    assert decoder.pending_bytes == 0


def test_incremental_vad_scores_equal_one_pass_over_the_stream(spoken: SpokenStream) -> None:
    samples = spoken.pcm.astype(np.float32) / 32768.0
    whole_frames = len(samples) // FRAME_SAMPLES
    # faster-whisper's own scoring of the whole stream in one call.
    one_pass = get_vad_model()(samples[: whole_frames * FRAME_SAMPLES]).reshape(-1)
    vad = StreamingVad()
    rng = np.random.default_rng(7)
    scores, offset = [], 0
    while offset < len(samples):
        size = int(rng.integers(1, 4000))
        scores.append(vad.score(samples[offset : offset + size]))
        offset += size
    incremental = np.concatenate(scores)
    assert vad.frames == whole_frames
    np.testing.assert_allclose(incremental, one_pass, atol=1e-5)
    assert (incremental > 0.5).mean() > 0.5, "real speech must score as speech"


def utterances(events: list[UtteranceStarted | UtteranceEnded]) -> list[UtteranceEnded]:
    return [e for e in events if isinstance(e, UtteranceEnded)]


def scores_of(spoken: SpokenStream) -> np.ndarray:
    return StreamingVad().score(spoken.pcm.astype(np.float32) / 32768.0)


def test_each_clip_is_one_utterance_ended_by_its_pause(spoken: SpokenStream) -> None:
    endpointer = Endpointer.for_settings(endpoint_silence_ms=600, max_utterance_s=29.4)
    ended = utterances([*endpointer.push(scores_of(spoken)), *endpointer.finish()])
    assert len(ended) == len(spoken.spans)
    for event, (start_s, end_s) in zip(ended, spoken.spans, strict=True):
        assert event.reason is EndReason.ENDPOINT
        # The VAD finds the speech inside the clip (clips have short silent edges).
        assert start_s - 0.1 <= event.start_frame * FRAME_S < end_s
        assert start_s < event.end_frame * FRAME_S <= end_s + 0.1


def test_a_longer_endpoint_silence_joins_clips_across_short_pauses(
    librivox_pcm: list[tuple[np.ndarray, str]],
) -> None:
    close = join_clips(librivox_pcm[:3], pause_s=0.5)
    short = Endpointer.for_settings(endpoint_silence_ms=300, max_utterance_s=29.4)
    long = Endpointer.for_settings(endpoint_silence_ms=1500, max_utterance_s=29.4)
    scores = scores_of(close)
    assert len(utterances([*short.push(scores), *short.finish()])) >= 3
    joined = utterances([*long.push(scores), *long.finish()])
    assert len(joined) == 1
    assert joined[0].reason is EndReason.END_OF_STREAM


def test_speech_at_the_end_of_the_stream_is_closed_by_finish(spoken: SpokenStream) -> None:
    cut = int(spoken.spans[0][0] * 16000) + 16000  # one second into the first clip
    truncated = SpokenStream(spoken.pcm[:cut], spoken.references[:1], spoken.spans[:1])
    endpointer = Endpointer.for_settings(endpoint_silence_ms=600, max_utterance_s=29.4)
    assert utterances(endpointer.push(scores_of(truncated))) == []
    (event,) = endpointer.finish()
    assert event.reason is EndReason.END_OF_STREAM
    assert event.end_frame == endpointer.frames


def test_an_utterance_longer_than_the_window_is_cut_at_its_best_pause(
    librivox_pcm: list[tuple[np.ndarray, str]],
) -> None:
    # About 40 s of speech whose pauses (0.4 s) are all shorter than the endpoint silence.
    speech = join_clips(librivox_pcm * 2, pause_s=0.4)
    scores = scores_of(speech)
    endpointer = Endpointer.for_settings(endpoint_silence_ms=2000, max_utterance_s=29.4)
    events = [*endpointer.push(scores), *endpointer.finish()]
    ended = utterances(events)
    assert len(ended) == 2
    first, second = ended
    assert first.reason is EndReason.WINDOW_LIMIT
    assert 15.0 <= (first.end_frame - first.start_frame) * FRAME_S <= 29.4
    # The cut lies in a pause between clips, not inside one.
    cut_s = first.end_frame * FRAME_S
    assert not any(start + 0.05 < cut_s < end - 0.05 for start, end in speech.spans)
    assert second.start_frame == first.end_frame
    assert events[events.index(first) + 1] == UtteranceStarted(first.end_frame)


def test_speech_without_any_pause_is_cut_hard_at_the_window_limit() -> None:
    endpointer = Endpointer.for_settings(endpoint_silence_ms=600, max_utterance_s=29.4)
    max_frames = endpointer.max_frames
    events = endpointer.push(np.full(max_frames * 2 + 10, 0.9, np.float32))
    ended = utterances(events)
    assert [e.reason for e in ended] == [EndReason.WINDOW_LIMIT, EndReason.WINDOW_LIMIT]
    assert [e.end_frame - e.start_frame for e in ended] == [max_frames, max_frames]
