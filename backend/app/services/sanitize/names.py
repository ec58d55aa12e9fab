"""The household members' names, in every way they are typed: whole or in parts (`Anne` of `Anne-Marie`), with or
without accents and umlauts, transliterated (`Juergen`/`Jurgen` for `Jürgen`, and back), with a genitive
(`Marias`, `Maria's`), in any case. A name that is also a common word (`Bill`, `Rose`) counts only where it is
written as a name: capitalized, not right after a determiner, not a month next to a day, and at the start of a
sentence only when what follows does not make it a verb ("Mark the calendar", "Will it rain?")."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from app.services.sanitize.doc import Doc
from app.services.sanitize.words import (
    COMMON_WORDS,
    DETERMINERS,
    FOLLOWERS,
    FUNCTION_WORDS,
    TIME_PREPOSITIONS,
    TIME_WORDS,
    word_set,
)

MIN_NAME_LETTERS = 2
# Parts of a name that are no name on their own ("van" of "Ludwig van Beethoven").
PARTICLES = word_set("von van der den de del della di da du des la le zu ten ter bin binti ibn dos das do y e")
TITLES = word_set("dr mr mrs ms miss mx prof sir dame rev herr frau hr fr mme mlle mme sr jr sra srta")
_SPECIAL = {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ß": "ss", "æ": "ae", "œ": "oe", "þ": "th", "ı": "i", "ŀ": "l"}
_DASHES = "‐‑–-"  # "-" last: a literal in a character class
_APOSTROPHES = "'’`´ʼ"
_NAME_CHARS = set(" .") | set(_DASHES) | set(_APOSTROPHES)


def strip_accents(text: str) -> str:
    """`Zoë` -> `Zoe`, `Łukasz` -> `Lukasz`, `Strauß` -> `Strauss`."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(_SPECIAL.get(c, _SPECIAL.get(c.lower(), c)) for c in plain)


@functools.lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """One key for every spelling of a name: no accents, no case, German transliterations collapsed."""
    key = strip_accents(text).casefold()
    for digraph, vowel in (("ae", "a"), ("oe", "o"), ("ue", "u"), ("ss", "s")):
        key = key.replace(digraph, vowel)
    return "".join(c for c in key if c.isalpha())


_COMMON_FOLDED = frozenset(fold(w) for w in COMMON_WORDS | PARTICLES)


def is_common_word(word: str) -> bool:
    """Whether a single word is a common English/German word (or two letters or fewer, which a word may be)."""
    letters = sum(c.isalpha() for c in word)
    return letters <= 2 or word.casefold() in COMMON_WORDS or word.casefold() in PARTICLES \
        or fold(word) in _COMMON_FOLDED


def validate_member_name(name: str) -> str:
    """The name cleaned (NFC, spaces collapsed), or ValueError saying why it cannot be a member's name."""
    cleaned = " ".join(unicodedata.normalize("NFC", name).split())
    if not cleaned:
        raise ValueError("a member's name must not be empty")
    bad = sorted({c for c in cleaned if not (c.isalpha() or unicodedata.combining(c) or c in _NAME_CHARS)})
    if bad:
        raise ValueError(f"a member's name may hold letters, spaces, hyphens, apostrophes and dots, not {bad}")
    if sum(c.isalpha() for c in cleaned) < MIN_NAME_LETTERS:
        raise ValueError(f"a member's name needs at least {MIN_NAME_LETTERS} letters: {cleaned!r}")
    return cleaned


def _letters(text: str) -> int:
    return sum(c.isalpha() for c in text)


_EDGE_PUNCTUATION = "()[]{}<>\"“”„«».,;:!?*/\\|"


def variants(name: str) -> set[str]:
    """The whole name and each part a person may be called by alone (two letters or more, no particles or titles).
    Any string is taken (an assignee need not pass `validate_member_name`), but nothing with fewer than two
    letters: a stored "a" would redact every "a"."""
    name = " ".join(unicodedata.normalize("NFC", name).split()).strip(_EDGE_PUNCTUATION + " ")
    if _letters(name) < MIN_NAME_LETTERS:
        return set()
    out = {name}
    for token in name.split():
        token = token.strip(_EDGE_PUNCTUATION)
        parts = [p.strip(_EDGE_PUNCTUATION) for p in re.split(f"[{_DASHES}]", token)]
        for part in ([token] if len(parts) > 1 else []) + parts:
            if _letters(part) >= MIN_NAME_LETTERS and part.casefold() not in PARTICLES | TITLES:
                out.add(part)
    return out


def _fold_table() -> dict[int, str]:
    """Accented Latin letters (and ł, ø, đ, ...) to their base letter, where that is one letter: `folded` keeps
    every position, so names are matched in a lower-cased, accent-free copy of the text with small patterns."""
    table: dict[int, str] = {}
    for code in (*range(0xC0, 0x250), *range(0x1E00, 0x1F00)):
        base = strip_accents(chr(code)).lower()
        if len(base) == 1 and base != chr(code):
            table[code] = base
    return table


_FOLD = _fold_table()


def folded(low: str) -> str:
    """A lower-cased text without accents, character for character (ß, æ, œ, þ stay: they are two letters)."""
    return low.translate(_FOLD)


# How a stored letter may be typed, in the folded text: "ü" as "ue" or "u", "ß" as "ss", "ø" as "oe" or "o", ...
_TYPED = {"ä": "(?:ae|a)", "ö": "(?:oe|o)", "ü": "(?:ue|u)", "ß": "(?:ss|ß)", "æ": "(?:ae|æ)", "œ": "(?:oe|œ)",
          "þ": "(?:th|þ)", "ø": "(?:oe|o)", "å": "(?:aa|a)", "đ": "(?:dj|d)"}


def _pattern(variant: str) -> str:
    """A regex, for the folded text, of every spelling of one variant: without accents, umlauts as `ue` or `u`,
    and back ("Juergen" typed "Jürgen" or "Jurgen")."""
    out: list[str] = []
    low = variant.lower()
    long_enough = _letters(variant) >= 5  # "Juergen" may be typed "Jurgen"; "Zoe" is not "Zo"
    i = 0
    while i < len(low):
        c, pair = low[i], low[i:i + 2]
        if i > 0 and pair in ("ae", "oe", "ue"):  # a transliterated umlaut, or just two letters: both
            out.append(f"(?:{pair}|{pair[0]})" if long_enough else pair)
            i += 2
            continue
        if pair == "ss":
            out.append("(?:ss|ß)")
            i += 2
            continue
        if c in _TYPED:
            out.append(_TYPED[c])
        elif c.isalpha():
            out.append(re.escape(folded(c)))
        elif c in _DASHES or c.isspace():
            out.append(rf"[\s{_DASHES}]{{0,2}}")
        elif c in _APOSTROPHES:
            out.append(f"[{_APOSTROPHES}]?")
        elif c == ".":
            out.append(r"\.?")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


_PREV_WORDS = re.compile(r"(?:([^\W_]+)\.?[ \t]+)?([^\W_]+)\.?[ \t]+$")
_NEXT_WORD = re.compile(r"(?:['’`´ʼ]?s\b|['’`´ʼ])?[ \t]*([^\W_]+)?([ \t]*(?:[.!?;,\n]|$))?")
_INFINITIVE = ("en", "ern", "eln")  # German tasks end in one: "Keller aufräumen", "Sonne tanken"
_SENTENCE_START = re.compile(r"(?:[.!?:;\n])[\s\"'“”‘’«»„(\[*•·>–—-]*(?:\d{1,4}[.):]?[ \t]+)?[\s\"“‘«„(\[*•·>–—-]*$")


def _is_name(text: str, start: int, end: int) -> bool:
    """Whether a common word that is also a member's name is used as the name here."""
    token = text[start:end]
    if not token[:1].isupper():
        return False
    if end < len(text) and text[end] in _APOSTROPHES:
        return True  # a possessive: "Bill's bike"
    lo = max(0, start - 40)
    before = ("\n" if lo == 0 else "") + text[lo:start]
    prev = _PREV_WORDS.search(before)
    w2, w1 = ((prev.group(1) or "").casefold(), prev.group(2).casefold()) if prev else ("", "")
    if w1 in DETERMINERS or (w2 in DETERMINERS and w1 not in FUNCTION_WORDS):
        return False  # "the Bill", "Pay The Electricity Bill", "im Mai"
    nxt_match = _NEXT_WORD.match(text, end)
    nxt = (nxt_match.group(1) or "") if nxt_match else ""
    last = bool(nxt_match and nxt_match.group(2) is not None)  # the next word ends the sentence
    folded = token.casefold()
    if folded in TIME_WORDS and (w1 in TIME_PREPOSITIONS or w1[:1].isdigit() or nxt[:1].isdigit()):
        return False  # "3 May", "May 3", "in May", "next Summer"
    verb_like = (folded in FUNCTION_WORDS or nxt.casefold() in FOLLOWERS or nxt[:1].isdigit()
                 or (last and nxt.islower() and nxt.endswith(_INFINITIVE)))
    # at a sentence's start: "Mark the calendar", "Will it rain?", "May I", "Max 3 per day", "Sonne tanken"
    return not (verb_like and _SENTENCE_START.search(before))


class NameMatcher:
    """Finds the members' names in a text; built once per set of names (see `compiled`)."""

    def __init__(self, names: Iterable[str]) -> None:
        found = {v for n in names for v in variants(n)}
        ordered = sorted(found, key=lambda v: (-_letters(v), v))  # the whole name before its parts
        alternatives = "|".join(dict.fromkeys(_pattern(v) for v in ordered))
        end = f"(?=(?:[{_APOSTROPHES}]?s)?[{_APOSTROPHES}]?(?!\\w))"  # a genitive may follow: Marias, Maria's
        self.pattern = re.compile(rf"(?<!\w)(?:{alternatives}){end}") if found else None

    def find(self, doc: Doc) -> list[tuple[int, int]]:
        if self.pattern is None:
            return []
        text = doc.text
        out = []
        for m in self.pattern.finditer(folded(doc.low)):
            word = text[m.start():m.end()]
            if (any(c.isspace() or c in _DASHES for c in word) or not is_common_word(word)
                    or _is_name(text, m.start(), m.end())):
                out.append(m.span())
        return out


@functools.lru_cache(maxsize=256)
def compiled(names: tuple[str, ...]) -> NameMatcher:
    """The matcher for a household's names (sorted, so the order they come in does not matter)."""
    return NameMatcher(names)
