"""The SSML subset's parser on its own: what each tag becomes, and every fault's position."""

from __future__ import annotations

import time

import pytest

from speech_platform.errors import InvalidArgument
from tts_service import ssml


def spoken(source: str):
    document = ssml.parse(source)
    aligned, sentences, styles = ssml.spoken_sentences(document, 300)
    return document, aligned, sentences, styles


def test_say_as_sub_and_entities_become_words_mapped_to_their_markup():
    source = (
        '<speak>Spell <say-as interpret-as="characters">AB1</say-as>, dial '
        '<say-as interpret-as="telephone">+1 555-0100</say-as> &amp; visit the '
        '<sub alias="World Wide Web">WWW</sub> on <say-as interpret-as="date">2024-05-03</say-as>'
        ', the <say-as interpret-as="ordinal">3</say-as> time of '
        '<say-as interpret-as="cardinal">1,200</say-as>.</speak>'
    )
    _, aligned, sentences, _ = spoken(source)
    assert sentences == [
        "Spell A B one, dial plus one, five five five, zero one zero zero and visit the World "
        "Wide Web on May third, twenty twenty-four, the third time of one thousand two hundred."
    ]
    start = aligned.text.index("World")
    first, last = aligned.source_span(start, start + len("World Wide Web"))
    assert source[first:last] == "WWW"
    start = aligned.text.index("May")
    first, last = aligned.source_span(start, start + 3)
    assert source[first:last] == "2024-05-03"


def test_breaks_prosody_and_marks_shape_the_sentences():
    source = (
        '<speak>Hello.<break time="750ms"/><prosody rate="slow">Take <mark name="m"/>your '
        'time.</prosody><p>Next one.</p><break strength="strong"/></speak>'
    )
    document, _, sentences, styles = spoken(source)
    assert sentences == ["Hello.", "Take your time.", "Next one."]
    assert [s.rate for s in styles] == [1.0, 0.75, 1.0]
    assert [s.pause_before_s for s in styles] == [0.0, 0.75, 0.0]
    assert styles[-1].pause_after_s == 0.75
    assert document.marks == [("m", source.index("<mark"))]


@pytest.mark.parametrize(
    ("source", "position", "message"),
    [
        ("<speak>Hello", 0, "never closed"),
        ("Hello", 0, "text outside <speak>"),
        ("<p>Hi</p>", 0, "one <speak> element"),
        ("<speak>a <b>c</b></speak>", 9, "<b> is not supported"),
        ("<speak>a </p></speak>", 9, "</p> closes <speak>"),
        ("<speak>a & b</speak>", 9, "'&' must start an entity"),
        ("<speak>&nbsp;</speak>", 7, "&nbsp; is not allowed"),
        ('<speak><break time="3 weeks"/></speak>', 7, "break time"),
        ('<speak><break time="11s"/></speak>', 7, "over 10 s"),
        ('<speak><say-as interpret-as="spell">x</say-as></speak>', 7, "interpret-as"),
        ('<speak><say-as interpret-as="cardinal">many</say-as></speak>', 7, "not a whole number"),
        ('<speak><say-as interpret-as="date">2024-13-01</say-as></speak>', 7, "not a date"),
        ("<speak><sub>x</sub></speak>", 7, "needs an alias"),
        ("<speak><mark/></speak>", 7, "needs a name"),
        ('<speak><prosody rate="warp">x</prosody></speak>', 7, "prosody rate"),
        ('<speak><prosody pitch="+3st">x</prosody></speak>', 7, "can change pitch"),
        ("<speak><break time=500ms/></speak>", 19, "must be quoted"),
        ('<speak><sub alias="a"><mark name="m"/></sub></speak>', 22, "only text"),
        ("<speak>a</speak> b", 16, "text outside"),
        ('<!DOCTYPE lolz [<!ENTITY lol "lol">]><speak>&lol;</speak>', 0, "DTDs"),
        ("<speak><![CDATA[x]]></speak>", 7, "CDATA"),
        ("<speak>1 < 2</speak>", 9, "'<' must start a tag"),
    ],
)
def test_malformed_ssml_names_the_fault_and_its_position(source, position, message):
    with pytest.raises(InvalidArgument) as caught:
        ssml.parse(source)
    assert f"SSML at character {position}:" in str(caught.value)
    assert message in str(caught.value)


def test_parsing_is_linear_in_the_text():
    """Hostile shapes (many entities, long attribute runs, deep nesting) stay linear."""
    cases = [
        "<speak>" + "a&amp;" * 20_000 + "</speak>",
        "<speak>" + '<mark name="x"' + " " * 100_000 + "/></speak>",
        "<speak>" + "<p>" * 5_000 + "x" + "</p>" * 5_000 + "</speak>",
    ]
    for source in cases:
        started = time.perf_counter()
        ssml.parse(source)
        assert time.perf_counter() - started < 1.0
