"""English words for numbers, so both engines read digits the same way and cache keys see
the words actually spoken (espeak would read digits too, but each engine its own way).

>>> cardinal(1234567)
'one million two hundred thirty-four thousand five hundred sixty-seven'
>>> ordinal(22)
'twenty-second'
>>> year(1999), year(2005), year(2024)
('nineteen ninety-nine', 'two thousand five', 'twenty twenty-four')
"""

from __future__ import annotations

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
#: Beyond this, numbers are read digit by digit (nobody says "four quadrillion ...").
MAX_CARDINAL = 10**15 - 1

_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest or not hundreds:
        words.append(_below_hundred(rest))
    return " ".join(words)


def cardinal(n: int) -> str:
    """Words for an integer; digit by digit past MAX_CARDINAL."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_CARDINAL:
        return digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    words = []
    for scale, name in _SCALES:
        count, n = divmod(n, scale)
        if count:
            words.append(f"{_below_thousand(count)} {name}")
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    if "-" in last:
        prefix, _, last = last.rpartition("-")
        head, sep = f"{head}{sep}{prefix}", "-"
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"


def digits(text: str) -> str:
    """Each digit on its own, as for codes and phone numbers: '007' -> 'zero zero seven'."""
    return " ".join(_ONES[int(d)] for d in text if d.isdigit())


def year(n: int) -> str:
    """How a year is said: 1999 'nineteen ninety-nine', 2005 'two thousand five'."""
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{_below_hundred(high)} hundred"
    if low < 10:
        return f"{_below_hundred(high)} oh {_ONES[low]}"
    return f"{_below_hundred(high)} {_below_hundred(low)}"


def decimal(text: str) -> str:
    """'3.14' -> 'three point one four'; the integer part is read as a number."""
    whole, _, fraction = text.partition(".")
    head = cardinal(int(whole)) if whole else "zero"
    return f"{head} point {digits(fraction)}" if fraction else head
