"""An SSML subset, parsed by a small linear-time scanner of our own (no XML library).

Supported: ``<speak>`` (the root), ``<break time="500ms|2s" strength="...">``,
``<say-as interpret-as="characters|cardinal|ordinal|date|telephone">``, ``<sub alias>``,
``<prosody rate>`` (x-slow..x-fast, "80%", or a factor) with ``pitch`` only at its default
(neither Piper nor Kokoro has a pitch control: their graphs take no pitch input, so another
pitch is INVALID_ARGUMENT rather than ignored), ``<mark name>``, and ``<p>``/``<s>`` as
sentence bounds.

Why our own scanner: XML parsers expand entities and read DTDs, the door to "billion laughs"
and external-entity attacks. Here a DTD, an entity other than the five predefined ones (and
numeric references) or CDATA is refused; every character is looked at a constant number of
times (tags end at the next ``>`` outside quotes, found with ``str.find``). Any fault is
INVALID_ARGUMENT naming its position in the text.

The result is ``Part``s of plain text (each character mapped to the SSML it came from, so
word timings point into the SSML source) with their speaking rate and the pause before them,
and the marks at their positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from speech_platform.errors import InvalidArgument
from tts_service import numbers
from tts_service.alignment import AlignedText
from tts_service.text import normalize_aligned, split_sentences

#: Longest pause one <break> may ask for.
MAX_BREAK_S = 10.0
_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.4, "strong": 0.75,
              "x-strong": 1.2}
_RATES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25,
          "x-fast": 1.6}
_DEFAULT_PITCH = {"", "default", "medium", "+0%", "0%", "+0st", "0st", "+0Hz", "0Hz"}
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
_TIME = re.compile(r"(\d+(?:\.\d+)?)(ms|s)")
_EMPTY_ELEMENTS = {"break", "mark"}
_TEXT_ONLY = {"say-as", "sub"}
_KNOWN = {"speak", "break", "say-as", "sub", "prosody", "mark", "p", "s"}


@dataclass(frozen=True)
class SentenceStyle:
    """How one sentence is spoken: a speaking-rate factor and silences around it."""

    rate: float = 1.0
    pause_before_s: float = 0.0
    pause_after_s: float = 0.0


#: Plain text: the request's rate, no pauses.
PLAIN = SentenceStyle()


@dataclass
class Part:
    """Plain text spoken at one rate, after a pause."""

    text: AlignedText
    rate: float = 1.0
    pause_before_s: float = 0.0


@dataclass
class Document:
    parts: list[Part] = field(default_factory=list)
    #: (name, position of the <mark> tag in the SSML source).
    marks: list[tuple[str, int]] = field(default_factory=list)
    #: A pause after everything (a <break> at the end).
    pause_after_s: float = 0.0


@dataclass
class _Element:
    name: str
    position: int
    attributes: dict[str, str]
    #: Text collected inside a say-as or sub (it is spoken transformed, as one span).
    pieces: list[tuple[str, int, int]] = field(default_factory=list)


def spoken_sentences(
    document: Document, max_chars: int
) -> tuple[AlignedText, list[str], list[SentenceStyle]]:
    """The document's normalised text (mapped to the SSML source), its sentences in order
    and each one's style. Parts are joined by line breaks, so a sentence never spans two."""
    pieces: list[AlignedText] = []
    sentences: list[str] = []
    styles: list[SentenceStyle] = []
    pause_s = 0.0
    for part in document.parts:
        pause_s += part.pause_before_s
        normalized = part.text.compose(normalize_aligned(part.text.text))
        said = split_sentences(normalized.text, max_chars)
        if not said:
            continue
        pieces.append(normalized)
        for index, sentence in enumerate(said):
            styles.append(SentenceStyle(part.rate, pause_s if index == 0 else 0.0))
            sentences.append(sentence)
        pause_s = 0.0
    pause_s += document.pause_after_s
    if styles and pause_s:
        styles[-1] = replace(styles[-1], pause_after_s=pause_s)
    newline = AlignedText("\n", (0,), (0,))
    joined = AlignedText("", (), ())
    for piece in pieces:
        joined = piece if not joined.text else _concat(_concat(joined, newline), piece)
    return joined, sentences, styles


def _concat(a: AlignedText, b: AlignedText) -> AlignedText:
    return AlignedText(a.text + b.text, a.starts + b.starts, a.ends + b.ends)


def fault(position: int, message: str) -> InvalidArgument:
    return InvalidArgument(f"SSML at character {position}: {message}")


def parse(source: str) -> Document:
    """The parts and marks of an SSML text, or INVALID_ARGUMENT with the fault's position."""
    return _Parser(source).run()


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.document = Document()
        self.stack: list[_Element] = []
        self.pieces: list[tuple[str, int, int]] = []  # text of the part being built
        self.rates: list[float] = [1.0]
        self.pause_s = 0.0
        self.root_closed = False

    def run(self) -> Document:
        source, position = self.source, 0
        position = _skip_prolog(source)
        while position < len(source):
            if source[position] == "<":
                position = self._markup(position)
            else:
                end = source.find("<", position)
                end = len(source) if end < 0 else end
                self._text(position, end)
                position = end
        if self.stack:
            top = self.stack[-1]
            raise fault(top.position, f"<{top.name}> is never closed")
        if not self.root_closed:
            raise fault(0, "the text must be one <speak> element")
        self._end_part()
        self.document.pause_after_s = self.pause_s
        return self.document

    # ------------------------------------------------------------------ markup

    def _markup(self, position: int) -> int:
        source = self.source
        if source.startswith("<!--", position):
            end = source.find("-->", position + 4)
            if end < 0:
                raise fault(position, "comment is never closed")
            return end + 3
        if source.startswith("<!", position) or source.startswith("<?", position):
            raise fault(position, "DTDs, CDATA and processing instructions are not allowed")
        closing = source.startswith("</", position)
        name_match = _NAME.match(source, position + (2 if closing else 1))
        if name_match is None:
            raise fault(position, "'<' must start a tag (write &lt; for a literal '<')")
        name = name_match[0]
        attributes, end, empty = self._attributes(name_match.end(), position)
        if self.root_closed:
            raise fault(position, "nothing may follow </speak>")
        if name not in _KNOWN:
            raise fault(position, f"<{name}> is not supported (see the TextToSpeech docs)")
        if closing:
            if attributes or empty:
                raise fault(position, f"</{name}> takes no attributes")
            self._close(name, position)
        else:
            self._open(_Element(name, position, attributes), empty or name in _EMPTY_ELEMENTS)
        return end

    def _attributes(self, position: int, tag_start: int) -> tuple[dict[str, str], int, bool]:
        """Attributes up to the tag's '>'; returns them, the position after it, and '/>'."""
        source = self.source
        attributes: dict[str, str] = {}
        while True:
            while position < len(source) and source[position].isspace():
                position += 1
            if position >= len(source):
                raise fault(tag_start, "tag is never closed with '>'")
            if source.startswith("/>", position):
                return attributes, position + 2, True
            if source[position] == ">":
                return attributes, position + 1, False
            name = _NAME.match(source, position)
            if name is None:
                raise fault(position, "expected an attribute name, '/>' or '>'")
            position = name.end()
            while position < len(source) and source[position].isspace():
                position += 1
            if not source.startswith("=", position):
                raise fault(position, f"attribute {name[0]} needs ='value'")
            position += 1
            while position < len(source) and source[position].isspace():
                position += 1
            quote = source[position] if position < len(source) else ""
            if quote not in ("'", '"'):
                raise fault(position, f"the value of {name[0]} must be quoted")
            close = source.find(quote, position + 1)
            if close < 0:
                raise fault(position, f"the value of {name[0]} is never closed")
            if "<" in source[position + 1 : close]:
                raise fault(position, f"the value of {name[0]} contains '<'")
            value = "".join(p for p, _, _ in self._unescape(position + 1, close))
            if name[0] in attributes:
                raise fault(name.start(), f"attribute {name[0]} is given twice")
            attributes[name[0]] = value
            position = close + 1

    def _open(self, element: _Element, empty: bool) -> None:
        name, position = element.name, element.position
        if not self.stack and name != "speak":
            raise fault(position, "the text must be one <speak> element")
        if self.stack and name == "speak":
            raise fault(position, "<speak> cannot be nested")
        if self.stack and self.stack[-1].name in _TEXT_ONLY:
            raise fault(position, f"<{self.stack[-1].name}> may hold only text")
        if name == "break":
            self._end_part()
            self.pause_s += _break_seconds(element)
        elif name == "mark":
            mark = element.attributes.get("name", "")
            if not mark:
                raise fault(position, "<mark> needs a name")
            self.document.marks.append((mark, position))
        elif name == "prosody":
            self._end_part()
            self.rates.append(self.rates[-1] * _prosody_rate(element))
        elif name in ("p", "s"):
            self._end_part()
        elif name == "say-as":
            interpret = element.attributes.get("interpret-as", "")
            if interpret not in _SAY_AS:
                raise fault(
                    position,
                    f"say-as interpret-as={interpret!r}: use one of {', '.join(sorted(_SAY_AS))}",
                )
        elif name == "sub" and "alias" not in element.attributes:
            raise fault(position, "<sub> needs an alias")
        if not empty:
            self.stack.append(element)
        elif name not in _EMPTY_ELEMENTS:
            self._close_element(element, position)

    def _close(self, name: str, position: int) -> None:
        if not self.stack or self.stack[-1].name != name:
            open_name = self.stack[-1].name if self.stack else "nothing"
            raise fault(position, f"</{name}> closes <{open_name}>")
        self._close_element(self.stack.pop(), position)

    def _close_element(self, element: _Element, position: int) -> None:
        if element.name == "speak":
            self.root_closed = True
        elif element.name == "prosody":
            self._end_part()
            self.rates.pop()
        elif element.name in ("p", "s"):
            self._end_part()
        elif element.name in _TEXT_ONLY:
            inner = "".join(p for p, _, _ in element.pieces)
            start = element.pieces[0][1] if element.pieces else position
            end = element.pieces[-1][2] if element.pieces else position
            if element.name == "sub":
                spoken = element.attributes["alias"]
            else:
                spoken = _SAY_AS[element.attributes["interpret-as"]](inner, element)
            self.pieces.append((f" {spoken} ", start, end))

    # ------------------------------------------------------------------ text

    def _text(self, start: int, end: int) -> None:
        pieces = self._unescape(start, end)
        if not self.stack:
            if "".join(p for p, _, _ in pieces).strip():
                raise fault(start, "text outside <speak>")
            return
        if self.stack[-1].name in _TEXT_ONLY:
            self.stack[-1].pieces.extend(pieces)
        else:
            self.pieces.extend(pieces)

    def _unescape(self, start: int, end: int) -> list[tuple[str, int, int]]:
        """Characters of ``source[start:end]`` with entities resolved, each with its span."""
        source = self.source
        pieces: list[tuple[str, int, int]] = []
        position = start
        while position < end:
            amp = source.find("&", position, end)
            stop = end if amp < 0 else amp
            pieces.extend((source[i], i, i + 1) for i in range(position, stop))
            if amp < 0:
                break
            semicolon = source.find(";", amp, min(end, amp + 12))
            if semicolon < 0:
                raise fault(amp, "'&' must start an entity (write &amp; for a literal '&')")
            pieces.append((_entity(source[amp + 1 : semicolon], amp), amp, semicolon + 1))
            position = semicolon + 1
        return pieces

    def _end_part(self) -> None:
        if not any(p.strip() for p, _, _ in self.pieces):
            self.pieces = []
            return
        text = AlignedText.join(self.pieces)
        self.document.parts.append(Part(text, self.rates[-1], self.pause_s))
        self.pieces = []
        self.pause_s = 0.0


def _skip_prolog(source: str) -> int:
    """Leading space and one ``<?xml ...?>`` declaration are allowed before <speak>."""
    position = len(source) - len(source.lstrip())
    if source.startswith("<?xml", position):
        end = source.find("?>", position)
        if end < 0:
            raise fault(position, "XML declaration is never closed")
        position = end + 2
    return position


def _entity(name: str, position: int) -> str:
    if name in _ENTITIES:
        return _ENTITIES[name]
    try:
        if name.startswith("#x") or name.startswith("#X"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
    except (ValueError, OverflowError):
        pass
    raise fault(position, f"&{name}; is not allowed (only &amp; &lt; &gt; &quot; &apos; &#N;)")


def _break_seconds(element: _Element) -> float:
    time_text = element.attributes.get("time")
    if time_text is None:
        strength = element.attributes.get("strength", "medium")
        if strength not in _STRENGTHS:
            raise fault(element.position, f"break strength {strength!r} is not known")
        return _STRENGTHS[strength]
    match = _TIME.fullmatch(time_text.strip())
    if match is None:
        raise fault(element.position, f"break time {time_text!r}: write it as 500ms or 1.5s")
    seconds = float(match[1]) / (1000 if match[2] == "ms" else 1)
    if seconds > MAX_BREAK_S:
        raise fault(element.position, f"break time {time_text!r} is over {MAX_BREAK_S:g} s")
    return seconds


def _prosody_rate(element: _Element) -> float:
    pitch = element.attributes.get("pitch", "").strip()
    if pitch not in _DEFAULT_PITCH:
        raise fault(
            element.position,
            f"prosody pitch {pitch!r}: neither voice engine (Piper, Kokoro) can change pitch",
        )
    text = element.attributes.get("rate", "").strip()
    if not text:
        return 1.0
    if text in _RATES:
        return _RATES[text]
    try:
        rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        rate = 0.0
    if not 0.25 <= rate <= 4.0:
        raise fault(
            element.position, f"prosody rate {text!r}: use x-slow..x-fast, 25%..400% or 0.25..4"
        )
    return rate


# ---------------------------------------------------------------------------- say-as


def _characters(text: str, element: _Element) -> str:
    return " ".join(ch.upper() if ch.isalpha() else numbers.digits(ch) if ch.isdigit() else ""
                    for ch in text if not ch.isspace()).strip()


def _integer(text: str, element: _Element) -> int:
    digits = text.strip().replace(",", "")
    if not re.fullmatch(r"-?\d{1,15}", digits):
        raise fault(element.position, f"say-as {element.attributes['interpret-as']}: "
                    f"{text.strip()!r} is not a whole number")
    return int(digits)


def _cardinal(text: str, element: _Element) -> str:
    return numbers.cardinal(_integer(text, element))


def _ordinal(text: str, element: _Element) -> str:
    return numbers.ordinal(_integer(re.sub(r"(?<=\d)(st|nd|rd|th)$", "", text.strip()), element))


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _date(text: str, element: _Element) -> str:
    """ISO (2024-05-03) or, by ``format`` (mdy default, dmy, ymd), 05/03/2024."""
    parts = re.split(r"[-/.]", text.strip())
    order = element.attributes.get("format", "ymd" if "-" in text else "mdy")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or sorted(order) != ["d", "m", "y"]:
        raise fault(element.position, f"say-as date: {text.strip()!r} is not a date "
                    "(2024-05-03, or 05/03/2024 with format mdy or dmy)")
    values = dict(zip(order, (int(p) for p in parts), strict=True))
    if not (1 <= values["m"] <= 12 and 1 <= values["d"] <= 31):
        raise fault(element.position, f"say-as date: {text.strip()!r} is not a date")
    return f"{_MONTHS[values['m'] - 1]} {numbers.ordinal(values['d'])}, {numbers.year(values['y'])}"


def _telephone(text: str, element: _Element) -> str:
    groups = re.findall(r"\d+", text)
    if not groups:
        raise fault(element.position, f"say-as telephone: {text.strip()!r} has no digits")
    spoken = ", ".join(numbers.digits(group) for group in groups)
    return ("plus " if text.strip().startswith("+") else "") + spoken


_SAY_AS = {
    "characters": _characters,
    "cardinal": _cardinal,
    "ordinal": _ordinal,
    "date": _date,
    "telephone": _telephone,
}
