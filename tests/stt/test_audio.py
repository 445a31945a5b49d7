"""Audio decoding: every container and raw encoding to 16 kHz mono, and every refusal."""

from __future__ import annotations

import io
import struct
import threading

import av
import numpy as np
import pytest

from speech.v1 import common_pb2
from speech_platform.errors import InvalidArgument
from stt_service.audio import decode_audio, mulaw_to_float
from tests.stt.media import correlation, encode, to_pcm16, wav_bytes

LINEAR16 = common_pb2.AUDIO_ENCODING_LINEAR16
MULAW = common_pb2.AUDIO_ENCODING_MULAW


@pytest.fixture(scope="module")
def speech(speech_clips) -> np.ndarray:
    """3 s of recorded speech at 16 kHz ("he was not an ill disposed young man")."""
    return speech_clips[1].samples


@pytest.mark.parametrize(
    ("container", "out_rate", "label", "min_correlation"),
    [
        ("wav", None, "WAV", 0.9999),
        ("flac", None, "FLAC", 0.9999),
        ("mp3", 44100, "MP3", 0.99),
        ("ogg", 48000, "Ogg", 0.98),
    ],
)
def test_containers_decode_to_16k_mono(speech, container, out_rate, label, min_correlation):
    data = encode(speech, container, out_rate=out_rate)
    decoded = decode_audio(data)
    assert decoded.source_format == label
    assert decoded.source_rate == (out_rate or 16000)
    assert decoded.source_channels == 1
    assert decoded.samples.dtype == np.float32
    assert decoded.duration_s == pytest.approx(len(speech) / 16000, abs=0.03)
    assert correlation(decoded.samples, speech) >= min_correlation


def test_declared_encoding_does_not_override_the_container(speech):
    # A FLAC file labelled MP3 still decodes: the content decides.
    decoded = decode_audio(encode(speech, "flac"), encoding=common_pb2.AUDIO_ENCODING_MP3)
    assert decoded.source_format == "FLAC"


def test_stereo_44k_is_averaged_to_mono_and_resampled(speech):
    left, right = speech, np.zeros_like(speech)
    data = encode(speech, "wav", rate=16000, out_rate=44100, channels=np.stack([left, right]))
    decoded = decode_audio(data)
    assert (decoded.source_rate, decoded.source_channels) == (44100, 2)
    assert decoded.duration_s == pytest.approx(len(speech) / 16000, abs=0.01)
    # The mean of a channel and a silent one: half the amplitude, same shape.
    assert correlation(decoded.samples, speech) > 0.999
    ratio = np.abs(decoded.samples).max() / np.abs(speech).max()
    assert ratio == pytest.approx(0.5, rel=0.05)


def test_raw_linear16_at_16k_is_exact(speech):
    pcm = to_pcm16(speech)
    decoded = decode_audio(pcm, encoding=LINEAR16, sample_rate_hertz=16000)
    expected = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
    np.testing.assert_array_equal(decoded.samples, expected)
    assert decoded.source_format == "LINEAR16"


def test_raw_linear16_stereo_8k_is_mixed_and_upsampled(speech):
    at_8k = speech[::2]  # crude decimation; the content only needs to survive resampling
    interleaved = np.stack([at_8k, at_8k], axis=1).reshape(-1)
    decoded = decode_audio(
        to_pcm16(interleaved), encoding=LINEAR16, sample_rate_hertz=8000, audio_channel_count=2
    )
    assert (decoded.source_rate, decoded.source_channels) == (8000, 2)
    assert len(decoded.samples) == pytest.approx(2 * len(at_8k), abs=32)
    assert correlation(decoded.samples[::2], at_8k) > 0.95


def test_mulaw_matches_ffmpegs_own_decoder(speech):
    """Mu-law bytes written by FFmpeg decode here exactly as FFmpeg decodes them."""
    data = encode(speech, "mulaw", rate=8000, out_rate=8000)
    ours = decode_audio(data, encoding=MULAW, sample_rate_hertz=8000)
    with av.open(io.BytesIO(data), format="mulaw", options={"sample_rate": "8000"}) as reader:
        theirs = np.concatenate([f.to_ndarray().reshape(-1) for f in reader.decode(audio=0)])
    np.testing.assert_allclose(
        mulaw_to_float(np.frombuffer(data, np.uint8)),
        theirs.astype(np.float32) / 32768.0,
        atol=1e-6,
    )
    assert ours.source_format == "MULAW"
    assert ours.duration_s == pytest.approx(len(data) / 8000, abs=0.01)


def test_mulaw_extremes():
    # 0x00 and 0x80 are the loudest codes of each sign; 0xFF and 0x7F are (near) zero.
    values = mulaw_to_float(np.array([0x00, 0x80, 0xFF, 0x7F], np.uint8))
    assert values[0] == pytest.approx(-32124 / 32768)
    assert values[1] == pytest.approx(32124 / 32768)
    assert values[2] == 0.0
    assert values[3] == 0.0


# ----------------------------------------------------------------------------- refusals


def _refused(data: bytes, **config) -> str:
    with pytest.raises(InvalidArgument) as caught:
        decode_audio(data, **config)
    return caught.value.message


def test_empty_audio():
    assert _refused(b"") == "audio is empty (0 bytes)"


def test_undecodable_bytes():
    message = _refused(bytes(range(256)) * 40)
    assert "could not be decoded" in message and "LINEAR16" in message


def test_headerless_pcm_without_encoding_is_refused_with_a_hint(speech):
    assert "sample_rate_hertz" in _refused(to_pcm16(speech))


@pytest.mark.parametrize("encoding", [LINEAR16, MULAW])
def test_raw_without_rate(encoding):
    assert "sample_rate_hertz is required" in _refused(b"\x00\x01" * 100, encoding=encoding)


@pytest.mark.parametrize("rate", [1000, 400000])
def test_raw_rate_out_of_range(rate):
    message = _refused(b"\x00\x01" * 100, encoding=LINEAR16, sample_rate_hertz=rate)
    assert "4000..192000" in message and str(rate) in message


def test_negative_values_and_unknown_enum():
    assert "sample_rate_hertz must be >= 0" in _refused(b"x", sample_rate_hertz=-8000)
    assert "audio_channel_count" in _refused(b"x", audio_channel_count=-1)
    assert "audio_channel_count" in _refused(b"x", audio_channel_count=33)
    assert "unknown AudioEncoding value 42" in _refused(b"x", encoding=42)


def test_raw_with_a_partial_frame_is_truncated():
    message = _refused(b"\x00" * 1001, encoding=LINEAR16, sample_rate_hertz=16000)
    assert "truncated" in message and "1001 bytes" in message
    stereo = _refused(
        b"\x00" * 1002, encoding=LINEAR16, sample_rate_hertz=16000, audio_channel_count=2
    )
    assert "4-byte frames" in stereo


@pytest.mark.parametrize(
    ("container", "out_rate"), [("wav", None), ("flac", None), ("mp3", 44100), ("ogg", 48000)]
)
def test_truncated_containers(speech, container, out_rate):
    data = encode(speech, container, out_rate=out_rate)
    message = _refused(data[: int(len(data) * 0.6)])
    assert "truncated" in message


def test_unsupported_container(speech):
    message = _refused(encode(speech, "matroska", out_rate=48000))
    assert "not supported" in message and "matroska" in message


def test_too_long_raw_is_refused_before_decoding():
    ten_seconds = b"\x00\x00" * 16000 * 10
    message = _refused(ten_seconds, encoding=LINEAR16, sample_rate_hertz=16000, max_seconds=5)
    assert message.startswith("audio is 10.0 s long") and "at most 5 s" in message


def test_too_long_container_stops_decoding_early():
    minute = wav_bytes(np.zeros(16000 * 60, np.float32))
    message = _refused(minute, max_seconds=5)
    assert "longer than 5 s" in message


def test_container_without_samples_is_refused():
    assert "contains no samples" in _refused(wav_bytes(np.zeros(0, np.float32)))


def _wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    """A PCM WAV header that declares ``rate`` and ``channels`` (16-bit)."""
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data_bytes)
    )


def test_a_header_declaring_a_huge_sample_rate_is_refused_before_decoding(monkeypatch):
    """32 KB of WAV that declares 64 MHz (issue: it stalled the server for seconds)."""
    from stt_service import audio

    def no_decoding(*args, **kwargs):
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(audio, "_decode_stream_mono", no_decoding)
    body = b"\x00\x01" * 16000
    message = _refused(_wav_header(64_000_000, 1, len(body)) + body)
    assert "declares 64000000 Hz" in message and "at most 192000 Hz" in message


def test_a_header_declaring_too_many_channels_is_refused():
    body = b"\x00\x00" * 16 * 1600
    message = _refused(_wav_header(16000, 16, len(body)) + body)
    assert "declares 16 channels" in message and "at most 8" in message


def test_a_flac_at_a_very_high_rate_is_refused_from_its_header(speech):
    high = encode(speech[:16000], "flac", out_rate=384000)
    assert len(high) < 300_000
    assert "declares 384000 Hz" in _refused(high)


def test_a_codec_outside_the_list_is_refused(speech):
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as output:
        stream = output.add_stream("adpcm_ima_wav", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (speech[None, :16000] * 32767).astype(np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    message = _refused(buffer.getvalue())
    assert "'adpcm_ima_wav' audio" in message and "accepted codecs" in message


async def test_short_raw_pcm_at_16k_decodes_on_the_loop_longer_in_the_pool(speech, monkeypatch):
    from stt_service import audio
    from stt_service.windowing import INLINE_AUDIO_S

    threads: list[threading.Thread] = []
    real = audio.decode_audio

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(audio, "decode_audio", recording)
    short = to_pcm16(speech[: int(INLINE_AUDIO_S * 16000)])
    longer = to_pcm16(np.tile(speech, 2)[: int(INLINE_AUDIO_S * 16000) + 1])
    inline = await audio.decode_audio_async(short, encoding=LINEAR16, sample_rate_hertz=16000)
    pooled = await audio.decode_audio_async(longer, encoding=LINEAR16, sample_rate_hertz=16000)
    # Raw PCM at another rate is resampled: the pool, however short.
    at_8k = await audio.decode_audio_async(short[:3200], encoding=LINEAR16, sample_rate_hertz=8000)
    assert threads[0] is threading.current_thread()
    assert threads[1] is not threading.current_thread() and threads[1].name.startswith(
        "audio-decode"
    )
    assert threads[2].name.startswith("audio-decode")
    np.testing.assert_array_equal(inline.samples, real(short, encoding=LINEAR16,
                                                       sample_rate_hertz=16000).samples)
    assert len(pooled.samples) == int(INLINE_AUDIO_S * 16000) + 1
    assert len(at_8k.samples) == pytest.approx(3200, abs=32)
