"""Text normalisation and sentence splitting for English voices.

Normalisation turns what people type into what a voice says: Unicode compatibility forms
folded, control and invisible characters removed, emoji and letters of scripts an English
voice cannot speak dropped, abbreviations, symbols and numbers spelled out, whitespace
collapsed (line breaks kept, since they end sentences). Both engines get the same words, and
the cache key sees them too, so "Dr. Smith" and "Doctor  Smith" are one entry.

Splitting makes each sentence its own batch item: a long text then never blocks short
requests, and streaming can return sentence by sentence. A sentence longer than
``max_chars`` is cut at clause punctuation, then at word boundaries, so no item exceeds what
an engine takes in one call (Kokoro: 510 phonemes).

>>> normalize("Dr. Smith paid $3.50 on the 2nd.")
'Doctor Smith paid three dollars and fifty cents on the second.'
>>> split_sentences("Hello there. How are you?")
['Hello there.', 'How are you?']
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from tts_service import numbers
from tts_service.alignment import AlignedText

#: Longest sentence given to an engine as one item, in characters.
DEFAULT_MAX_SENTENCE_CHARS = 300

# ---------------------------------------------------------------------------- characters

_KEEP_SYMBOLS = set("$£€¥%&@+=#")
#: Typographic marks an English voice should hear as their plain forms.
_PLAIN_FORMS = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),  # curly single quotes
        **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),  # curly double quotes
        **dict.fromkeys("\u2013\u2014\u2015", ", "),  # dashes pause like a comma
        **dict.fromkeys("\u2212\u2010\u2011", "-"),  # minus sign, hyphens
        "\u3002": ". ",  # ideographic full stop (NFKC keeps it)
    }
)


def _is_latin_letter(char: str) -> bool:
    return char.isascii() or "LATIN" in unicodedata.name(char, "")


def _clean_characters(text: AlignedText) -> AlignedText:
    """Keeps letters of the Latin script, digits, punctuation, spaces and line breaks."""
    last_kept = ""

    def clean(_: int, char: str) -> str:
        nonlocal last_kept
        kept = _clean_character(char, last_kept)
        if kept:
            last_kept = kept[-1]
        return kept

    return text.map_chars(clean)


def _clean_character(char: str, previous: str) -> str:
    """What one character becomes ('' when it goes); ``previous`` is the last one kept."""
    if char in "\n\r\u2028\u2029\x0b\x0c\x85":
        return "\n"
    category = unicodedata.category(char)
    major = category[0]
    if major == "L":
        return char if _is_latin_letter(char) else " "
    if major == "N":
        value = unicodedata.decimal(char, None)
        return str(value) if value is not None else " "
    if major == "M":
        # Combining marks survive only on Latin letters (NFKC composes most of them).
        return char if previous.isalpha() else ""
    if major == "P":
        return char
    if major == "Z" or char == "\t":
        return " "
    if major == "S":
        return char if char in _KEEP_SYMBOLS else " "
    if category == "Cc":  # a control character may be all that separates two words
        return " "
    return ""  # format characters (zero-width, BOM, soft hyphen), private use, unassigned


#: A character with the combining marks that follow it: NFKC composes within one cluster.
_CLUSTER = re.compile(r"(?s).[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*")


def _compatibility_forms(match: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", match[0]).translate(_PLAIN_FORMS)


# ---------------------------------------------------------------------------- abbreviations

_ABBREVIATIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), spoken)
    for pattern, spoken in (
        (r"\bMr\.(?=\s|$)", "Mister"),
        (r"\bMrs\.(?=\s|$)", "Missus"),
        (r"\bMs\.(?=\s|$)", "Miz"),
        (r"\bDr\.(?=\s|$)", "Doctor"),
        (r"\bProf\.(?=\s|$)", "Professor"),
        (r"\bSt\.(?=\s+[A-Z])", "Saint"),
        (r"\bJr\.", "Junior"),
        (r"\bSr\.", "Senior"),
        (r"\bvs\.?(?=\s)", "versus"),
        (r"\betc\.", "et cetera"),
        (r"\be\.g\.", "for example"),
        (r"\bi\.e\.", "that is"),
        (r"\bapprox\.", "approximately"),
        (r"\bNo\.(?=\s*\d)", "number"),
        (r"\bno\.(?=\s*\d)", "number"),
        (r"\bInc\.", "Incorporated"),
        (r"\bLtd\.", "Limited"),
        (r"\bDept\.", "Department"),
        (r"\bMt\.(?=\s)", "Mount"),
    )
)
_SYMBOL_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"(?<=\w)@(?=\w)"), " at "),
    (re.compile(r"\s*@\s*"), " at "),
    (re.compile(r"#(?=\d)"), "number "),
    (re.compile(r"#"), " "),
    (re.compile(r"\s*\+\s*"), " plus "),
    (re.compile(r"\s*=\s*"), " equals "),
)

# ---------------------------------------------------------------------------- numbers

_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_YEAR_CONTEXT = (
    "in|since|by|from|until|till|of|year|circa|around|before|after|during|early|late|mid"
)
_INTEGER = r"\d{1,3}(?:,\d{3})+|\d+"
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


def _to_int(text: str) -> int:
    return int(text.replace(",", ""))


def _say_integer(text: str) -> str:
    """An integer as written: leading zeros and very long runs are read digit by digit."""
    plain = text.replace(",", "")
    if (len(plain) > 1 and plain.startswith("0")) or len(plain) > 15:
        return numbers.digits(plain)
    return numbers.cardinal(int(plain))


def _say_number(text: str) -> str:
    whole, dot, fraction = text.partition(".")
    if not dot:
        return _say_integer(whole)
    head = _say_integer(whole) if whole else "zero"
    return f"{head} point {numbers.digits(fraction)}"


def _currency(match: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[match["symbol"]]
    whole = _to_int(match["whole"])
    words = f"{_say_integer(match['whole'])} {one if whole == 1 else many}"
    scale = match["scale"]
    if scale:
        return f"{_say_number(match['whole'] + (match['cents'] or ''))} {scale} {many}"
    cents_text = match["cents"]
    if cents_text:
        cents = int((cents_text[1:] + "00")[:2])
        if cents:
            words += f" and {numbers.cardinal(cents)} {sub_one if cents == 1 else sub_many}"
    return words


def _iso_date(match: re.Match[str]) -> str:
    month, day = int(match["m"]), int(match["d"])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return f"{_say_integer(match['y'])}, {_say_integer(match['m'])}, {_say_integer(match['d'])}"
    return f"{_MONTHS[month - 1]} {numbers.ordinal(day)}, {numbers.year(int(match['y']))}"


def _phone(match: re.Match[str]) -> str:
    return ", ".join(numbers.digits(group) for group in match[0].split("-"))


def _standalone(words: str, match: re.Match[str]) -> str:
    """Keeps spoken numbers apart from letters they were glued to ('MP3' -> 'MP three')."""
    before = match.string[match.start() - 1] if match.start() else " "
    after = match.string[match.end()] if match.end() < len(match.string) else " "
    return f"{' ' if before.isalpha() else ''}{words}{' ' if after.isalpha() else ''}"


def _ordinal(match: re.Match[str]) -> str:
    return numbers.ordinal(_to_int(match["n"]))


def _year(match: re.Match[str]) -> str:
    return f"{match['context']} {numbers.year(int(match['n']))}{match['plural'] or ''}"


def _decade(match: re.Match[str]) -> str:
    spoken = numbers.year(int(match["n"]))
    if spoken.endswith("y"):
        return spoken[:-1] + "ies"
    return spoken + "s"


def _clock(match: re.Match[str]) -> str:
    hours, minutes = int(match["h"]), int(match["m"])
    if minutes == 0:
        spoken = f"{numbers.cardinal(hours)} o'clock" if not match["ampm"] else numbers.cardinal(
            hours
        )
    elif minutes < 10:
        spoken = f"{numbers.cardinal(hours)} oh {numbers.cardinal(minutes)}"
    else:
        spoken = f"{numbers.cardinal(hours)} {numbers.cardinal(minutes)}"
    ampm = match["ampm"]
    if ampm:
        spoken += " " + " ".join(ampm.replace(".", "").upper())
    return spoken


_NUMBER_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(
            r"(?P<symbol>[$£€¥])\s?(?P<whole>" + _INTEGER + r")(?P<cents>\.\d+)?"
            r"(?:\s?(?P<scale>thousand|million|billion|trillion)\b)?"
        ),
        _currency,
    ),
    (
        re.compile(r"\b(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?:\s?(?P<ampm>[AaPp]\.?[Mm]\b))?"),
        _clock,
    ),
    (re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b"), _iso_date),
    (re.compile(r"(?<![\w-])\d{3}-\d{3,4}(?:-\d{4})?(?![\w-])"), _phone),
    (re.compile(r"\b(?P<n>" + _INTEGER + r")(?:st|nd|rd|th)\b"), _ordinal),
    (re.compile(r"\b(?P<n>1[1-9]\d0|20\d0)s\b"), _decade),
    (
        re.compile(
            r"\b(?P<context>" + _YEAR_CONTEXT + r")\s+(?P<n>1[1-9]\d\d|20\d\d)(?P<plural>'s)?\b",
            re.IGNORECASE,
        ),
        _year,
    ),
    (
        # Starts at a number's first digit only: trying every digit of a long run, each
        # time to the run's end, would be quadratic.
        re.compile(r"(?<![\d,.])(?P<n>(?:" + _INTEGER + r")(?:\.\d+)?|\.\d+)\s?%"),
        lambda m: f"{_say_number(m['n'])} percent",
    ),
    (
        re.compile(r"(?<![\w.-])(?P<a>\d+)\s?-\s?(?P<b>\d+)(?![\w.])"),
        lambda m: f"{_say_integer(m['a'])} to {_say_integer(m['b'])}",
    ),
    (
        re.compile(r"(?<![\w.])-(?P<n>(?:" + _INTEGER + r")(?:\.\d+)?)"),
        lambda m: f"minus {_say_number(m['n'])}",
    ),
    (
        re.compile(r"(?P<n>(?:" + _INTEGER + r")(?:\.\d+)?|(?<!\d)\.\d+)"),
        lambda m: _standalone(_say_number(m["n"]), m),
    ),
)

# ---------------------------------------------------------------------------- whitespace

_SPACES = re.compile(r"[ \t]+")
_SPACED_BREAKS = re.compile(r" *\n[\s]*")
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[,.;:!?…])")


def normalize(text: str) -> str:
    """What the voice will say, as text; '' when nothing speakable is left."""
    return normalize_aligned(text).text


def normalize_aligned(text: str) -> AlignedText:
    """``normalize`` that also maps each spoken character back to the span of ``text`` it
    was made from (word timings and marks point at the client's text, not ours)."""
    aligned = AlignedText.of(text).sub(_CLUSTER, _compatibility_forms)
    aligned = _clean_characters(aligned)
    for pattern, spoken in _ABBREVIATIONS:
        aligned = aligned.sub(pattern, spoken)
    for pattern, spoken in _SYMBOL_WORDS:
        aligned = aligned.sub(pattern, spoken)
    for rule, say in _NUMBER_RULES:
        aligned = aligned.sub(rule, say)
    aligned = aligned.sub(_SPACES, " ")
    aligned = aligned.sub(_SPACED_BREAKS, "\n")
    aligned = aligned.sub(_SPACE_BEFORE_PUNCT, "")
    return aligned.strip()


# ---------------------------------------------------------------------------- splitting

#: A sentence ends at . ! ? or an ellipsis (with any closing quotes or brackets) before a space,
#: unless the word before the mark is a single letter (an initial, as in "J. R. Tolkien").
#: A match only starts at the first mark of a run (the lookbehind), and its quantifiers never
#: give back (possessive): each run is scanned once, so splitting is linear in the text.
_SENTENCE_END = re.compile(
    r"(?<![.!?…])(?:(?<!\b[A-Za-z])[.!?…]++[\"')\]]*+(?=\s)|(?<=\b[A-Za-z])[!?…]++(?=\s))"
)
#: For callers that look for sentence ends themselves (tts_service.streaming_text).
SENTENCE_END = _SENTENCE_END
_CLAUSE_END = re.compile(r"[,;:](?=\s)")


def is_speakable(sentence: str) -> bool:
    """True when a sentence has a letter to say (not just punctuation)."""
    return any(char.isalpha() for char in sentence)


def _cut(piece: str, max_chars: int) -> list[str]:
    """Cuts an over-long piece at clause marks, then spaces, then anywhere."""
    if len(piece) <= max_chars:
        return [piece]
    for boundary in (_CLAUSE_END, re.compile(r" ")):
        cuts = [m.end() for m in boundary.finditer(piece) if 0 < m.end() < len(piece)]
        if not cuts:
            continue
        parts: list[str] = []
        start = 0
        while len(piece) - start > max_chars:
            fitting = [c for c in cuts if start < c <= start + max_chars]
            if not fitting:
                break
            parts.append(piece[start : fitting[-1]].strip())
            start = fitting[-1]
        rest = piece[start:].strip()
        if len(parts) and len(rest) <= max_chars:
            return [p for p in (*parts, rest) if p]
        if parts:
            return [p for p in parts if p] + _cut(rest, max_chars)
    return [piece[i : i + max_chars].strip() for i in range(0, len(piece), max_chars)]


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS) -> list[str]:
    """Normalised text to speakable sentences, each at most ``max_chars`` long."""
    if max_chars < 20:
        raise ValueError("max_chars must be at least 20")
    sentences: list[str] = []
    for line in text.split("\n"):
        start = 0
        bounds = [m.end() for m in _SENTENCE_END.finditer(line)]
        for end in [*bounds, len(line)]:
            sentence = line[start:end].strip()
            start = end
            if sentence:
                sentences.extend(_cut(sentence, max_chars))
    return [s for s in sentences if is_speakable(s)]


def pack_sentences(sentences: list[str], max_items: int, max_chars: int) -> list[str]:
    """Joins neighbouring sentences (up to ``max_chars``) when there are more than ``max_items``,
    so a text of hundreds of tiny sentences cannot flood a batcher queue on its own."""
    if len(sentences) <= max_items:
        return sentences
    packed: list[str] = []
    for sentence in sentences:
        if packed and len(packed[-1]) + 1 + len(sentence) <= max_chars:
            packed[-1] = f"{packed[-1]} {sentence}"
        else:
            packed.append(sentence)
    return packed
