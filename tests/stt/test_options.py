"""Request options: language tags, priorities, beam and prompt bounds."""

from __future__ import annotations

import pytest

from speech.v1 import common_pb2, stt_pb2
from speech_platform.errors import InvalidArgument
from stt_service.options import (
    TranscribeOptions,
    batcher_priority,
    check_beam_size,
    check_prompt,
    parse_language,
)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("", None),
        ("auto", None),
        (" AUTO ", None),
        ("en", "en"),
        ("en-US", "en"),
        ("de_DE", "de"),
        ("zh-Hant-TW", "zh"),
        ("yue", "yue"),
        ("iw", "he"),
        ("nb-NO", "no"),
    ],
)
def test_language_tags(code, expected):
    assert parse_language(code) == expected


@pytest.mark.parametrize("code", ["english", "e", "12", "en US", "??"])
def test_bad_language_tags(code):
    with pytest.raises(InvalidArgument, match="not a BCP-47"):
        parse_language(code)


def test_priorities_map_onto_the_batcher_scale():
    assert batcher_priority(common_pb2.PRIORITY_LOW) == 0
    assert batcher_priority(common_pb2.PRIORITY_UNSPECIFIED) == 1
    assert batcher_priority(common_pb2.PRIORITY_NORMAL) == 1
    assert batcher_priority(common_pb2.PRIORITY_HIGH) == 2
    with pytest.raises(InvalidArgument, match="unknown Priority value 7"):
        batcher_priority(7)


def test_beam_size_bounds():
    assert check_beam_size(0, 5) == 5
    assert check_beam_size(1, 5) == 1 and check_beam_size(10, 5) == 10
    for bad in (-1, 11):
        with pytest.raises(InvalidArgument, match=r"1\.\.10"):
            check_beam_size(bad, 5)


def test_prompt_bounds_and_cleaning():
    assert check_prompt("  Names: Dashwood. ", (" Elinor ", "", "Marianne")) == (
        "Names: Dashwood.",
        ("Elinor", "Marianne"),
    )
    with pytest.raises(InvalidArgument, match=r"hotwords\[1\] is 101 characters"):
        check_prompt("", ("ok", "x" * 101))


def test_options_from_a_recognition_config():
    config = stt_pb2.RecognitionConfig(
        model=" base ",
        language_code="de-DE",
        enable_word_time_offsets=True,
        beam_size=3,
        initial_prompt="Hallo",
        hotwords=["Berlin"],
    )
    assert TranscribeOptions.from_config(config) == TranscribeOptions(
        model="base",
        language="de-DE",
        word_timestamps=True,
        beam_size=3,
        initial_prompt="Hallo",
        hotwords=("Berlin",),
    )
