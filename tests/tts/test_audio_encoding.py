"""Encoders, resampling and gain, checked by decoding with PyAV (ffmpeg)."""

from __future__ import annotations

import io
import struct
import wave

import av
import numpy as np
import pytest

from speech_platform.errors import InvalidArgument
from tests.tts.audio import MP3_SLACK_SAMPLES, band_energy_above, decode
from tts_service.audio_encoding import (
    MP3_RATES,
    OPUS_RATES,
    AudioPipeline,
    Encoding,
    Resampler,
    apply_gain,
    encode_whole,
    mulaw_encode,
    resolve_output,
    to_int16,
    validate_gain_db,
    validate_speaking_rate,
    wav_header,
)

NATIVE = 22050


def tone(seconds: float, rate: int = NATIVE, hz: float = 440.0, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# ---------------------------------------------------------------------------- validation


def test_defaults_wav_at_the_native_rate():
    assert resolve_output(0, 0, NATIVE) == resolve_output(Encoding.WAV, NATIVE, NATIVE)
    assert resolve_output(0, 0, NATIVE).sample_rate == NATIVE


def test_mulaw_defaults_to_telephony_rate_and_opus_to_the_nearest_opus_rate():
    assert resolve_output(Encoding.MULAW, 0, NATIVE).sample_rate == 8000
    assert resolve_output(Encoding.OGG_OPUS, 0, 22050).sample_rate == 24000
    assert resolve_output(Encoding.OGG_OPUS, 0, 24000).sample_rate == 24000


@pytest.mark.parametrize(
    ("encoding", "rate", "words"),
    [
        (99, 0, "audio_config.encoding"),
        (Encoding.WAV, 7999, "between 8000 and 48000"),
        (Encoding.LINEAR16, 48001, "between 8000 and 48000"),
        (Encoding.LINEAR16, -1, "sample_rate_hertz"),
        (Encoding.OGG_OPUS, 22050, "not possible with OGG_OPUS"),
        (Encoding.OGG_OPUS, 44100, "8000, 12000, 16000, 24000, 48000"),
        (Encoding.MP3, 37000, "not possible with MP3"),
    ],
)
def test_impossible_formats_are_refused_naming_the_field(encoding, rate, words):
    with pytest.raises(InvalidArgument, match=words):
        resolve_output(encoding, rate, NATIVE)


@pytest.mark.parametrize("value", [0.2, 4.01, -1.0, float("nan"), float("inf")])
def test_speaking_rate_outside_quarter_to_four_is_refused(value):
    with pytest.raises(InvalidArgument, match=r"speaking_rate must be between 0.25 and 4.0"):
        validate_speaking_rate(value)


def test_speaking_rate_zero_means_normal_and_bounds_are_inclusive():
    assert validate_speaking_rate(0) == 1.0
    assert validate_speaking_rate(0.25) == 0.25
    assert validate_speaking_rate(4.0) == 4.0


@pytest.mark.parametrize("value", [-96.5, 16.01, float("nan")])
def test_gain_outside_range_is_refused(value):
    with pytest.raises(InvalidArgument, match=r"volume_gain_db must be between -96 and 16"):
        validate_gain_db(value)


# ---------------------------------------------------------------------------- samples


def test_mulaw_matches_the_g711_curve_and_ffmpeg():
    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    ours = np.frombuffer(mulaw_encode(pcm), np.uint8)

    context = av.CodecContext.create("pcm_mulaw", "w")
    context.sample_rate, context.layout, context.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    packets = [*context.encode(frame), *context.encode(None)]
    theirs = np.frombuffer(b"".join(bytes(p) for p in packets), np.uint8)
    # Same code everywhere except a few values at segment edges, where G.711's reference
    # truncates and ffmpeg rounds: one code apart at most.
    assert np.mean(ours == theirs) > 0.98
    assert np.max(np.abs(ours.astype(int) - theirs.astype(int))) <= 1

    decoded = decode(ours.tobytes(), Encoding.MULAW, 8000).samples * 32768
    wide = pcm.astype(np.int32)
    # mu-law's quantisation step is relative: about 1/16 of the magnitude at most.
    assert np.all(np.abs(decoded - wide) <= np.abs(wide) / 16 + 16)


def test_int16_conversion_clips_instead_of_wrapping():
    assert to_int16(np.array([2.0, -2.0, 0.5], np.float32)).tolist() == [32767, -32767, 16384]


def test_gain_in_decibels():
    audio = tone(0.1, level=0.25)
    assert np.max(np.abs(apply_gain(audio, 6.0206))) == pytest.approx(0.5, rel=1e-3)
    assert np.max(np.abs(apply_gain(audio, -96))) < 1e-5
    assert apply_gain(audio, 0) is audio


def test_resampling_in_pieces_equals_resampling_at_once():
    audio = tone(1.0)
    whole = Resampler(NATIVE, 16000)
    expected = np.concatenate([whole.push(audio), whole.flush()])
    pieces = Resampler(NATIVE, 16000)
    parts = [pieces.push(p) for p in np.array_split(audio, 7)]
    got = np.concatenate([*parts, pieces.flush()])
    assert got.size == expected.size == 16000
    assert np.max(np.abs(got - expected)) < 1e-4


def test_wav_headers_whole_and_streaming():
    whole = wav_header(16000, 3200)
    assert len(whole) == 44 and whole[:4] == b"RIFF" and whole[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", whole[4:8])[0] == 36 + 3200
    assert struct.unpack("<I", whole[40:44])[0] == 3200
    streaming = wav_header(16000, None)
    assert struct.unpack("<I", streaming[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", streaming[40:44])[0] == 0xFFFFFFFF


def test_a_whole_wav_is_readable_by_the_standard_library():
    data, duration = encode_whole(tone(0.5), NATIVE, resolve_output(Encoding.WAV, 16000, NATIVE), 0)
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getframerate() == 16000
        assert reader.getnchannels() == 1 and reader.getsampwidth() == 2
        assert reader.getnframes() == 8000
    assert duration == pytest.approx(0.5)


# ---------------------------------------------------------------------------- every encoding

CASES = [
    *((Encoding.LINEAR16, r) for r in (0, 8000, 16000, 44100)),
    *((Encoding.MULAW, r) for r in (0, 16000)),
    *((Encoding.WAV, r) for r in (0, 8000, 24000, 48000)),
    *((Encoding.FLAC, r) for r in (0, 16000, 48000)),
    *((Encoding.MP3, r) for r in (0, 8000, 16000, 44100)),
    *((Encoding.OGG_OPUS, r) for r in (0, 8000, 16000, 48000)),
]
MAGIC = {
    Encoding.WAV: b"RIFF",
    Encoding.FLAC: b"fLaC",
    Encoding.OGG_OPUS: b"OggS",
}


def _tolerance(encoding: Encoding, rate: int, streaming: bool) -> float:
    if encoding == Encoding.MP3 and streaming:
        return MP3_SLACK_SAMPLES / rate
    if encoding in (Encoding.MP3, Encoding.OGG_OPUS):
        return 0.025  # codec frames (Opus 20 ms)
    return 1e-9


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("encoding", "rate"), CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_every_encoding_decodes_at_the_requested_rate_and_duration(encoding, rate, streaming):
    output = resolve_output(encoding, rate, NATIVE)
    audio = tone(1.5, hz=300.0)
    pipeline = AudioPipeline(NATIVE, output, 0.0, streaming=streaming)
    if streaming:  # three sentences, as StreamingSynthesize would push them
        chunks = [pipeline.push(p) for p in np.array_split(audio, 3)]
        chunks[-1] += pipeline.finish()
    else:
        chunks = [pipeline.push(audio) + pipeline.finish()]
    data = b"".join(chunks)
    assert pipeline.duration_s == pytest.approx(1.5, abs=1.0 / NATIVE)
    if encoding in MAGIC:
        assert data.startswith(MAGIC[encoding])
    if streaming and encoding in (Encoding.LINEAR16, Encoding.MULAW, Encoding.WAV):
        assert all(chunks), "raw and WAV streams give audio with every sentence"

    decoded = decode(data, encoding, output.sample_rate)
    assert decoded.declared_rate == output.sample_rate
    assert decoded.duration_s == pytest.approx(
        1.5, abs=_tolerance(encoding, output.sample_rate, streaming) + 1e-3
    )
    if encoding != Encoding.OGG_OPUS:
        assert decoded.decoded_rate == output.sample_rate
    # The 300 Hz tone survives; what was produced at the requested rate has nothing above
    # its Nyquist frequency (this is how Opus, decoded at 48 kHz, shows its real rate).
    assert band_energy_above(decoded.samples, decoded.decoded_rate, output.sample_rate / 2) < 1e-3
    middle = decoded.samples[decoded.samples.size // 4 : 3 * decoded.samples.size // 4]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_codec_rate_tables_are_what_the_encoders_accept():
    for rate in OPUS_RATES:
        resolve_output(Encoding.OGG_OPUS, rate, NATIVE)
    for rate in MP3_RATES:
        data, _ = encode_whole(tone(0.2), NATIVE, resolve_output(Encoding.MP3, rate, NATIVE), 0)
        assert decode(data, Encoding.MP3, rate).decoded_rate == rate


def test_streamed_ogg_leaves_audio_with_each_sentence_not_only_at_the_end():
    output = resolve_output(Encoding.OGG_OPUS, 0, NATIVE)
    pipeline = AudioPipeline(NATIVE, output, 0.0, streaming=True)
    first = pipeline.push(tone(1.0))
    second = pipeline.push(tone(1.0))
    rest = pipeline.finish()
    # Pages are cut at least every 100 ms, so most of each second is out before the next.
    assert len(first) > len(rest) and len(second) > len(rest)
    assert decode(first + second + rest, Encoding.OGG_OPUS, 24000).duration_s == pytest.approx(
        2.0, abs=0.025
    )
