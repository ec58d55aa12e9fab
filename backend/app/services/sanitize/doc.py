"""The text as the finders see it, and the helpers that keep them fast on long prompts.

Speed (a prompt may hold thousands of titles): Python's regex engine scans quickly only for a pattern that starts
with a literal or a character class, so the patterns here start with one (the digit of a number, the capital of a
plate) and check what must not come before in a look-behind placed after it (`\\d(?<![\\w.]\\d)` instead of
`(?<![\\w.])\\d`). Word lists are matched case-sensitively in `low`, the lower-cased text, which is several times
faster than a case-insensitive alternation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

Span = tuple[int, int, str]
Spans = list[tuple[int, int]]


# One character for one, so that positions stay those of the original: every kind of space (no-break, thin,
# zero-width) becomes " ", every dash "-", and an underscore that wraps words (markdown's `_12 Baker Street_`) " ".
_SAME_LENGTH = str.maketrans({c: " " for c in "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                              "\u2009\u200a\u200b\u200c\u200d\u202f\u205f\u2060\u3000\ufeff"}
                             | {c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"})
_WRAPPING_UNDERSCORE = re.compile(r"(?<![^\s(\[{\"'*])_+(?=\w)|(?<=\w)_+(?=[.,;:!?)\]}\"'*]*(?:\s|$))")


def normalized(text: str) -> str:
    """The text as the finders read it: same length, spaces, dashes and markdown underscores made plain."""
    out = text.translate(_SAME_LENGTH)
    if "_" in out:
        out = _WRAPPING_UNDERSCORE.sub(lambda m: " " * len(m.group()), out)
    return out


def lower_aligned(text: str) -> str:
    """`text.lower()`, character for character (a few characters lower-case to two, e.g. "İ": kept as they are)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


@dataclass
class Doc:
    """A text with what earlier kinds found masked out (NULs), its lower-cased twin, and what was found."""

    text: str
    low: str = ""
    found: list[Span] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.low:
            self.low = lower_aligned(self.text)

    def windows(self, trigger: re.Pattern[str], reach: int = 80, lower: bool = False) -> Iterator[tuple[int, int]]:
        """Merged regions around each match of `trigger` (in `low` if `lower`), `reach` characters either way and
        widened to whitespace, so a pattern run in them sees whole words."""
        text = self.text
        lo = hi = -1
        for m in trigger.finditer(self.low if lower else text):
            start, end = max(0, m.start() - reach), min(len(text), m.end() + reach)
            if start <= hi:
                hi = max(hi, end)
                continue
            if hi >= 0:
                yield _widen(text, lo, hi)
            lo, hi = start, end
        if hi >= 0:
            yield _widen(text, lo, hi)


_SPACE = re.compile(r"\s")


def _widen(text: str, lo: int, hi: int) -> tuple[int, int]:
    while lo > 0 and not text[lo - 1].isspace():
        lo -= 1
    m = _SPACE.search(text, hi)
    return lo, m.start() if m else len(text)


def preceded_by_word_char(text: str, i: int, extra: str = "") -> bool:
    """Whether the character before position `i` is a letter, a digit, `_` or one of `extra`."""
    if i <= 0:
        return False
    c = text[i - 1]
    return c.isalnum() or c == "_" or c in extra
