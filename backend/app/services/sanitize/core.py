"""The sanitizer: finds every kind of personal data in a text, replaces each distinct value with a placeholder that
cannot be confused with anything the user typed, and puts the originals back in an answer."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from app.services.sanitize import dates, ids, names, numbers, places, web
from app.services.sanitize.doc import Doc, Span, lower_aligned, normalized

DEFAULT_REGIONS = ("GB", "US", "DE", "FR", "ES", "IT", "NL", "AT", "CH", "BE", "IE")

Finder = Callable[[Doc], Iterable[tuple[int, int]]]

# Placeholders as the user may have typed them: `[PERSON_1]`, and our fallback forms `[PERSON_1~2]`.
_PLACEHOLDER_LIKE = re.compile(r"\[[A-Z][A-Z_]*_\d+(?:~(\d+))?\]")


@dataclass
class Sanitized:
    """A text with its personal data replaced, and how to put it back."""

    text: str
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original

    @property
    def redacted(self) -> bool:
        return bool(self.mapping)


class Sanitizer:
    """Finds personal data in texts; one per household (it knows the members' names). Cheap to build: the names'
    pattern is compiled once per set of names and shared."""

    def __init__(self, member_names: Iterable[str] = (), regions: Sequence[str] = DEFAULT_REGIONS) -> None:
        self.regions = tuple(regions)
        self._names = names.compiled(tuple(sorted({n for n in member_names if n and n.strip()})))
        # In this order: each kind is looked for with what earlier kinds found masked out, so a card's digits
        # cannot start a phone number and a street's name is not a member's name.
        self._finders: list[tuple[str, Finder]] = [
            ("SECRET", web.secrets), ("EMAIL", web.emails), ("IBAN", numbers.ibans), ("CARD", numbers.cards),
            ("ID", ids.national_ids), ("DOB", dates.births), ("IP", web.ips),
            ("PHONE", partial(numbers.phones, regions=self.regions)), ("SECRET", web.tokens),
            ("PLATE", places.plates), ("ADDRESS", places.addresses), ("POSTCODE", places.postcodes),
            ("PERSON", self._names.find),
        ]

    def spans(self, text: str) -> list[Span]:
        """(start, end, kind) of every piece of personal data, in order, none overlapping."""
        plain = normalized(text)
        doc = Doc(plain, lower_aligned(plain))
        taken = bytearray(len(text))
        for kind, find in self._finders:
            new: list[Span] = []
            for start, end in sorted(find(doc), key=lambda s: (s[0], s[0] - s[1])):
                if start < end and taken.find(1, start, end) == -1:
                    taken[start:end] = b"\x01" * (end - start)
                    new.append((start, end, kind))
            if new:
                doc.found.extend(new)
                doc.text, doc.low = _mask(doc.text, new), _mask(doc.low, new)
        return sorted(doc.found)

    def sanitize(self, text: str) -> Sanitized:
        """The text with each distinct value replaced by one placeholder per kind (`[PHONE_1]`, `[PHONE_2]`...);
        one member's name in any spelling is one placeholder."""
        form = _free_form(text)
        mapping: dict[str, str] = {}
        seen: dict[tuple[str, str], str] = {}
        counts: dict[str, int] = {}
        out, pos = [], 0
        for start, end, kind in self.spans(text):
            value = text[start:end]
            key = (kind, names.fold(value) if kind == "PERSON" else value)
            placeholder = seen.get(key)
            if placeholder is None:
                counts[kind] = counts.get(kind, 0) + 1
                placeholder = seen[key] = f"[{kind}_{counts[kind]}{form}]"
                mapping[placeholder] = value
            out += [text[pos:start], placeholder]
            pos = end
        out.append(text[pos:])
        return Sanitized("".join(out), mapping)

    @staticmethod
    def restore(text: str, mapping: dict[str, str]) -> str:
        """Put the originals back in an answer (the placeholders the model echoed), in one pass."""
        if not mapping:
            return text
        pattern = re.compile("|".join(re.escape(p) for p in sorted(mapping, key=len, reverse=True)))
        return pattern.sub(lambda m: mapping[m.group()], text)


def _mask(text: str, spans: list[Span]) -> str:
    parts, pos = [], 0
    for start, end, _ in sorted(spans):
        parts += [text[pos:start], "\x00" * (end - start)]
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _free_form(text: str) -> str:
    """The suffix that makes our placeholders differ from any the text holds: "" (`[PERSON_1]`) when it holds
    none, else the first `~n` (`[PERSON_1~1]`) it does not hold."""
    used = {int(m.group(1) or 0) for m in _PLACEHOLDER_LIKE.finditer(text)}
    if 0 not in used:
        return ""
    n = 1
    while n in used:
        n += 1
    return f"~{n}"
