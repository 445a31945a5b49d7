"""The stream value format: a round trip keeps every chunk boundary; damage is detected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speech_platform.cache import CorruptChunks, decode_chunks, encode_chunks


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_round_trip_keeps_boundaries(chunks: list[bytes]) -> None:
    assert decode_chunks(encode_chunks(chunks)) == chunks


@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=10), st.data())
def test_truncated_value_is_rejected(chunks: list[bytes], data: st.DataObject) -> None:
    encoded = encode_chunks(chunks)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(CorruptChunks):
        decode_chunks(encoded[:cut])


def test_foreign_and_padded_values_are_rejected() -> None:
    with pytest.raises(CorruptChunks):
        decode_chunks(b"RIFF....WAVEfmt ")  # a plain WAV response is not a chunk list
    with pytest.raises(CorruptChunks):
        decode_chunks(encode_chunks([b"a"]) + b"x")
