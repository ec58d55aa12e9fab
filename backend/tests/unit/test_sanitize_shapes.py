"""The same personal data in every typographic shape: in brackets, quotes or markdown, at the start or end of a
line or of a listing entry, in upper or lower case, with no-break spaces, double spaces or en dashes."""

from __future__ import annotations

import pytest

from app.services.sanitize import Sanitizer
from tests.unit.sanitize_cases import roundtrips

S = Sanitizer(["Emma Smith", "Jürgen", "Anne-Marie"])

VALUES = {"DE89 3704 0044 0532 0130 00": "IBAN", "4111 1111 1111 1111": "CARD", "+44 20 7946 0958": "PHONE",
          "030 12345678": "PHONE", "emma.smith@example.com": "EMAIL", "12 Baker Street": "ADDRESS",
          "Hauptstraße 5": "ADDRESS", "123-45-6789": "ID", "NW1 6XE": "POSTCODE", "AB12 CDE": "PLATE",
          "Jürgen": "PERSON", "Anne-Marie": "PERSON"}
WRAPS = ["{}", "({})", "[{}]", '"{}"', "'{}'", "«{}»", "„{}“", "{}.", "{},", "{}!", "{}?", "{};", "{}:", "{}/", "{}…",
         "- {}", "12: {}", "{}\n13: next", "\t{}\t", "x {} y", "<{}>", "*{}*", "_{}_", "**{}**", "Re:{}",
         "{} (mobile)"]


def shapes(value: str) -> set[str]:
    return {value, value.upper(), value.lower(), value.replace(" ", "\u00a0"), value.replace("-", "\u2013"),
            value.replace(" ", "  "), value.replace(" ", "\u202f")}


@pytest.mark.parametrize("value", VALUES)
def test_every_shape_is_redacted(value: str) -> None:
    leaks = []
    for shaped in shapes(value):
        for wrap in WRAPS:
            text = wrap.format(shaped)
            out = roundtrips(S, text)
            if shaped in out.text or f"[{VALUES[value]}_1]" not in out.text:
                leaks.append((text, out.text))
    assert not leaks, leaks[:10]
