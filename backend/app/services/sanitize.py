"""Data minimization before anything leaves our infrastructure (GDPR): personal data in a text is replaced by
stable placeholders (`[PERSON_1]`, `[PHONE_1]`, ...) and restored in the answer where that is right.

What is found: email addresses; phone numbers in international and local formats (`phonenumbers`, for the
regions the household lives in); IBANs and payment card numbers, only when their checksums hold
(`python-stdnum`); IP addresses; street addresses (a street word with a house number, in English, German,
French, Spanish, Italian and Dutch forms); and the names of the household's members known to the app.
What stays: dates, times, quantities, prices, room and product names (tested).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import phonenumbers
from stdnum import iban, luhn

DEFAULT_REGIONS = ("GB", "US", "DE", "FR", "ES", "IT", "NL", "AT", "CH", "BE", "IE")

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_STREET_WORDS = (
    r"street|st\.?|road|rd\.?|avenue|ave\.?|lane|ln\.?|drive|dr\.?|way|court|ct\.?|place|pl\.?|close|crescent|"
    r"boulevard|blvd\.?|terrace|gardens|square|sq\.?|"
    r"stra(?:ß|ss)e|str\.?|weg|gasse|allee|platz|ring|damm|ufer|"
    r"rue|avenue|boulevard|chemin|impasse|all[ée]e|quai|"
    r"calle|c/|avenida|avda\.?|paseo|plaza|camino|"
    r"via|viale|piazza|corso|vicolo|"
    r"straat|laan|plein|gracht|kade|singel"
)
_STREET = rf"(?i:{_STREET_WORDS})"  # street words in any case; names must start with a capital
_OF = r"(?:(?i:de|du|des|la|le|del|della|di|van|der|von)\s+)*"
_NAME = r"[A-ZÀ-Ý][\w'’-]*"
# "12 rue de la Paix", "221B Baker Street", "Calle Mayor 3", "Hauptstraße 5", "Via Roma 10", "Keizersgracht 123"
_ADDRESS = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?,?\s+{_STREET}\s+{_OF}{_NAME}(?:\s+{_NAME}){{0,2}}"
    rf"|\b\d{{1,5}}[A-Za-z]?,?\s+(?:{_NAME}\s+){{0,3}}{_STREET}\b"
    rf"|\b{_STREET}\s+{_OF}{_NAME}(?:\s+{_NAME}){{0,2}},?\s+\d{{1,5}}[a-z]?\b"
    rf"|\b{_NAME}(?i:stra(?:ß|ss)e|str\.|weg|gasse|allee|platz|straat|laan|gracht|plein|kade)\s+\d{{1,5}}[a-z]?\b"
)
_DATEISH = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$|^\d{1,2}:\d{2}")


@dataclass
class Sanitized:
    """A text with its personal data replaced, and how to put it back."""

    text: str
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original

    @property
    def redacted(self) -> bool:
        return bool(self.mapping)


class Sanitizer:
    """Finds personal data in texts; one per household (it knows the members' names)."""

    def __init__(self, member_names: Iterable[str] = (), regions: Sequence[str] = DEFAULT_REGIONS) -> None:
        names = sorted({n.strip() for n in member_names if n and n.strip()}, key=len, reverse=True)
        parts = [re.escape(n) for n in names] + [re.escape(p) for n in names for p in n.split() if len(p) > 2]
        self._names = re.compile(r"\b(?:" + "|".join(dict.fromkeys(parts)) + r")\b", re.IGNORECASE) if parts else None
        self.regions = tuple(regions)

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) of every piece of personal data, in order. Each kind is looked for in the text with
        what earlier kinds found masked out, so a phone number's digits cannot start an address."""
        spans: list[tuple[int, int, str]] = []
        masked = text
        finders: list[tuple[str, Callable[[str], list[tuple[int, int]]]]] = [
                   ("EMAIL", lambda t: [m.span() for m in _EMAIL.finditer(t)]),
                   ("IBAN", lambda t: [m.span() for m in _IBAN.finditer(t) if iban.is_valid(m.group())]),
                   ("CARD", lambda t: [m.span() for m in _CARD.finditer(t) if _card(m.group())]),
                   ("IP", lambda t: [m.span() for m in (*_IPV4.finditer(t), *_IPV6.finditer(t)) if _ip(m.group())]),
                   ("PHONE", self._phones),
                   ("ADDRESS", lambda t: [m.span() for m in _ADDRESS.finditer(t)]),
                   ("PERSON", lambda t: [m.span() for m in self._names.finditer(t)] if self._names else [])]
        for kind, find in finders:
            for start, end in sorted(find(masked), key=lambda s: (s[0], s[0] - s[1])):
                if "\x00" in masked[start:end]:
                    continue  # overlaps something found already
                spans.append((start, end, kind))
                masked = masked[:start] + "\x00" * (end - start) + masked[end:]
        return sorted(spans)

    def _phones(self, text: str) -> list[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for region in self.regions:
            for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
                raw = m.raw_string
                if _DATEISH.match(raw.strip()) or sum(c.isdigit() for c in raw) < 7:
                    continue  # a date or a time read as a number
                out.add((m.start, m.end))
        return sorted(out)

    def sanitize(self, text: str) -> Sanitized:
        """The text with each distinct value replaced by one placeholder per kind (`[PHONE_1]`, `[PHONE_2]`...)."""
        mapping: dict[str, str] = {}
        seen: dict[tuple[str, str], str] = {}
        counts: dict[str, int] = {}
        out, pos = [], 0
        for start, end, kind in self.spans(text):
            value = text[start:end]
            key = (kind, value.casefold() if kind == "PERSON" else value)
            placeholder = seen.get(key)
            if placeholder is None:
                counts[kind] = counts.get(kind, 0) + 1
                placeholder = seen[key] = f"[{kind}_{counts[kind]}]"
                mapping[placeholder] = value
            out += [text[pos:start], placeholder]
            pos = end
        out.append(text[pos:])
        return Sanitized("".join(out), mapping)

    @staticmethod
    def restore(text: str, mapping: dict[str, str]) -> str:
        """Put the originals back in an answer (placeholders the model echoed)."""
        for placeholder, value in mapping.items():
            text = text.replace(placeholder, value)
        return text


def _card(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits) and len(set(digits)) > 1


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
