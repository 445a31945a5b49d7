"""Text normalisation and sentence splitting: what the voices are given to say."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts_service import numbers
from tts_service.text import is_speakable, normalize, pack_sentences, split_sentences


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (40, "forty"),
        (42, "forty-two"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (20_000, "twenty thousand"),
        (1_234_567, "one million two hundred thirty-four thousand five hundred sixty-seven"),
        (3_000_000_000, "three billion"),
        (-5, "minus five"),
    ],
)
def test_cardinals(n, words):
    assert numbers.cardinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (8, "eighth"), (9, "ninth"),
     (12, "twelfth"), (20, "twentieth"), (21, "twenty-first"), (22, "twenty-second"),
     (100, "one hundredth"), (103, "one hundred third")],
)
def test_ordinals(n, words):
    assert numbers.ordinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [(1999, "nineteen ninety-nine"), (2005, "two thousand five"), (2024, "twenty twenty-four"),
     (1900, "nineteen hundred"), (1905, "nineteen oh five"), (2000, "two thousand")],
)
def test_years(n, words):
    assert numbers.year(n) == words


def test_numbers_beyond_the_cardinal_range_are_read_digit_by_digit():
    assert numbers.cardinal(10**15) == "one " + " ".join(["zero"] * 15)


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        (
            "Dr. Smith met Mr. Jones and Mrs. Brown.",
            "Doctor Smith met Mister Jones and Missus Brown.",
        ),
        ("Apples, pears, etc. are fruit.", "Apples, pears, et cetera are fruit."),
        ("Bring tools, e.g. a hammer.", "Bring tools, for example a hammer."),
        ("It costs $3.50 today.", "It costs three dollars and fifty cents today."),
        ("It costs $1 or £2.", "It costs one dollar or two pounds."),
        ("A $1.5 million deal.", "A one point five million dollars deal."),
        ("We grew 50% this year.", "We grew fifty percent this year."),
        ("It was the 21st time.", "It was the twenty-first time."),
        ("Born in 1984 in Ohio.", "Born in nineteen eighty-four in Ohio."),
        ("Music of the 1990s.", "Music of the nineteen nineties."),
        ("Meet at 10:30 am.", "Meet at ten thirty A M."),
        ("Meet at 9:05.", "Meet at nine oh five."),
        ("Pi is 3.14 or so.", "Pi is three point one four or so."),
        ("It has 1,234 rows.", "It has one thousand two hundred thirty-four rows."),
        ("It was -5 outside.", "It was minus five outside."),
        ("Wait 10-20 minutes.", "Wait ten to twenty minutes."),
        ("Call 555-1234.", "Call five five five, one two three four."),
        ("Agent 007 reporting.", "Agent zero zero seven reporting."),
        ("Room No. 5 and #7.", "Room number five and number seven."),
        ("Salt & pepper.", "Salt and pepper."),
        ("On 2024-05-01 we met.", "On May first, twenty twenty-four we met."),
        ("An MP3 file.", "An MP three file."),
    ],
)
def test_normalisation_spells_out_numbers_abbreviations_and_symbols(text, spoken):
    assert normalize(text) == spoken


def test_whitespace_is_collapsed_but_line_breaks_are_kept():
    assert normalize("  one \t two  \r\n\n\n three  ") == "one two\nthree"


def test_control_and_invisible_characters_are_removed_without_gluing_words():
    assert normalize("Hello\x00world\x07 and zero\u200bwidth\ufeff") == "Hello world and zerowidth"


def test_emoji_and_other_scripts_are_dropped_latin_accents_kept():
    text = "I \u2764\ufe0f caf\u00e9 \U0001f600 \u4e2d\u6587 \u041f\u0440\u0438\u0432\u0435\u0442."
    assert normalize(text) == "I caf\u00e9."


def test_compatibility_forms_are_folded():
    full_width = "\uff26\uff55\uff4c\uff4c \uff11\uff12\uff13"
    assert normalize(full_width) == "Full one hundred twenty-three"


def test_non_ascii_digits_become_numbers():
    assert normalize("\u0663 cats") == "three cats"  # Arabic-Indic three


def test_typographic_quotes_and_dashes_become_plain():
    assert normalize("\u201cHi\u201d \u2014 it\u2019s me") == "\"Hi\", it's me"


def test_nothing_speakable_normalises_to_no_sentences():
    for text in ["\U0001f600\U0001f389", "... !!! ???", "\u4e2d\u6587", "\x00\x01\x02", "   "]:
        assert split_sentences(normalize(text)) == []


def test_sentences_split_at_terminal_punctuation_and_line_breaks():
    text = normalize("Hello there. How are you? Great!\nNew line without a stop\nLast one...")
    assert split_sentences(text) == [
        "Hello there.",
        "How are you?",
        "Great!",
        "New line without a stop",
        "Last one...",
    ]


def test_an_ideographic_full_stop_ends_a_sentence():
    assert split_sentences(normalize("Hello\u3002World is here.")) == ["Hello.", "World is here."]


def test_initials_and_decimals_do_not_end_sentences():
    text = normalize("J. R. R. Tolkien wrote 3.5 books. Then he rested.")
    assert split_sentences(text) == [
        "J. R. R. Tolkien wrote three point five books.",
        "Then he rested.",
    ]


def test_long_sentences_are_cut_at_clauses_then_words():
    clause = "this clause has exactly a few words in it"
    sentence = ", ".join([clause] * 20) + "."
    pieces = split_sentences(sentence, max_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert all(p.endswith((",", ".")) for p in pieces)  # cut after a comma, not mid-clause
    assert " ".join(pieces) == sentence


def test_a_run_without_spaces_is_cut_anywhere():
    pieces = split_sentences("a" * 1000, max_chars=300)
    assert [len(p) for p in pieces] == [300, 300, 300, 100]


def test_a_five_thousand_character_paragraph_splits_into_bounded_sentences():
    sentence = "The committee reviewed the proposal in detail and agreed to continue "
    paragraph = (sentence * 80)[:5000]
    pieces = split_sentences(normalize(paragraph))
    assert pieces and all(len(p) <= 300 for p in pieces)
    assert "".join(pieces).replace(" ", "") == normalize(paragraph).replace(" ", "")


def test_packing_joins_tiny_sentences_only_when_there_are_too_many():
    few = ["Hi.", "Yes.", "No."]
    assert pack_sentences(few, max_items=5, max_chars=50) == few
    many = ["Hi."] * 100
    packed = pack_sentences(many, max_items=64, max_chars=50)
    assert len(packed) < 64
    assert all(len(p) <= 50 for p in packed)
    assert " ".join(packed) == " ".join(many)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_normalises_to_bounded_speakable_sentences(text):
    sentences = split_sentences(normalize(text), max_chars=120)
    for sentence in sentences:
        assert 0 < len(sentence) <= 120
        assert is_speakable(sentence)
        assert all(ch.isprintable() for ch in sentence)


@pytest.mark.parametrize("unit", ["…", "!", "?!", "1", "1.", "12%", "Mr. ", "$1", "11:", "1st"])
def test_hostile_runs_cost_linear_time(unit):
    """Runs of marks or digits were quadratic (5,000 "…" held the event loop for seconds).
    Eight times the input must cost about eight times as much, far below the 64 times a
    quadratic pass would take (CPU time, best of three)."""

    def cost(repeats: int) -> float:
        text = unit * repeats
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            split_sentences(normalize(text))
            best = min(best, time.process_time() - started)
        return max(best, 1e-4)

    assert cost(8000) / cost(1000) < 24
