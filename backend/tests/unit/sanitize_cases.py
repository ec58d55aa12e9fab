"""Families of inputs for the sanitizer's tests: hypothesis strategies that generate personal data in the shapes
people type it (formats, cases, separators, surrounding text), and helpers to check what came out."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import stdnum.numdb
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from stdnum import iban, luhn

from app.services.sanitize import Sanitized, Sanitizer

# The same examples on every run and machine (no example database); a failure prints the example that broke.
# SANITIZE_EXPLORE=<n> runs n fresh random examples per family instead, to look for new leaks.
_EXPLORE = int(os.environ.get("SANITIZE_EXPLORE", "0"))
FAMILY = settings(max_examples=_EXPLORE or 250, deadline=None, derandomize=not _EXPLORE, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

CATALOG = Path(__file__).resolve().parents[2] / "app" / "data" / "catalog.csv"


def catalog_titles() -> list[str]:
    with CATALOG.open(encoding="utf-8") as f:
        return [row["title"] for row in csv.DictReader(f)]


def roundtrips(s: Sanitizer, text: str) -> Sanitized:
    """Sanitize, and check that restoring the placeholders gives the text back exactly."""
    out = s.sanitize(text)
    assert Sanitizer.restore(out.text, out.mapping) == text, (text, out)
    return out


def digit_windows(value: str, size: int = 6) -> set[str]:
    digits = re.sub(r"\D", "", value)
    return {digits[i:i + size] for i in range(len(digits) - size + 1)}


def leaked_digits(out_text: str, value: str, size: int = 6) -> set[str]:
    """Runs of `size` digits of `value` still in the output (separators between digits ignored)."""
    runs = re.findall(r"\d[\d \-./]*\d", out_text)
    joined = {re.sub(r"\D", "", r) for r in runs}
    return {w for w in digit_windows(value, size) if any(w in j for j in joined)}


# -- words around the data ------------------------------------------------------------------------------------------
WORDS = ["pay", "the", "rent", "EUR", "50", "BIC", "DEUTDEFFXXX", "bis", "morgen", "and", "3", "more", "for",
         "Miete", "ref", "12/27", "exp", "03/29", "CVV", "123", "thanks", "!", "(", ")", "–", "€", "1.200,00"]
prefix_text = st.sampled_from(["", "Pay ", "pay to ", "IBAN: ", "Überweisung an ", "Virement sur ", "card ",
                               "Karte ", "ref: ", "(", "Konto\n", "1: "])
suffix_text = st.lists(st.sampled_from(WORDS), max_size=5).map(lambda ws: (" " + " ".join(ws)) if ws else "")


# -- IBANs ----------------------------------------------------------------------------------------------------------
_IBAN_DB = stdnum.numdb.get("iban")
IBAN_COUNTRIES = ["DE", "GB", "FR", "IT", "NL", "AT", "CH", "IE", "PL", "PT", "SE", "DK", "FI", "LU", "CZ",
                  "GR", "HU", "MT", "RO", "LI", "MC", "TR", "IL", "SA"]


@st.composite
def ibans(draw: st.DrawFn) -> str:
    """A valid IBAN (mod 97 and the country's structure; countries with no national check digits)."""
    cc = draw(st.sampled_from(IBAN_COUNTRIES))
    structure = _IBAN_DB.info(cc)[0][1]["bban"]
    alphabet = {"n": "0123456789", "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "c": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}
    bban = "".join(draw(st.text(alphabet[kind], min_size=int(n), max_size=int(n)))
                   for n, kind in re.findall(r"(\d+)!([nac])", structure))
    number = cc + "00" + bban
    number = cc + iban.calc_check_digits(number) + bban
    assert iban.is_valid(number), number
    return number


@st.composite
def typed_ibans(draw: st.DrawFn) -> str:
    """An IBAN as people type it: compact, in groups of four with spaces or dashes, in any case."""
    number = draw(ibans())
    sep = draw(st.sampled_from(["", " ", "-", " "]))
    typed = sep.join(number[i:i + 4] for i in range(0, len(number), 4)) if sep else number
    case = draw(st.sampled_from([str.upper, str.lower, str.title, lambda s: s[:2].lower() + s[2:]]))
    return str(case(typed))


# -- payment cards --------------------------------------------------------------------------------------------------
CARD_BRANDS = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
               ("6011", 16), ("35", 16), ("36", 14), ("62", 19)]


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(CARD_BRANDS))
    body = prefix + draw(st.text("0123456789", min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1))
    number = body + luhn.calc_check_digit(body)
    assert luhn.is_valid(number)
    return number


@st.composite
def typed_cards(draw: st.DrawFn) -> str:
    number = draw(cards())
    sep = draw(st.sampled_from(["", " ", "-"]))
    if not sep:
        return number
    groups = [4, 6, 5] if len(number) == 15 else [4, 6, 4] if len(number) == 14 else [4] * 5
    out, i = [], 0
    for g in groups:
        if i < len(number):
            out.append(number[i:i + g])
            i += g
    return sep.join(out)


card_suffix = st.sampled_from(["", " 12/27", " exp 03/29", " 12/27 CVV 123", " valid until 11/28", ", 50 EUR",
                               " for 19.99", " 0327", " and the PIN"])

# -- names ----------------------------------------------------------------------------------------------------------
ACCENTED = {"a": "áàâäãå", "e": "éèêë", "i": "íìîï", "o": "óòôöõø", "u": "úùûü", "c": "ç", "n": "ñ", "s": "š",
            "z": "ž", "y": "ý"}
GERMAN = {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
PLAIN = str.maketrans({a: b for b, accents in ACCENTED.items() for a in accents} | {"ß": "ss", "ø": "o"})


@st.composite
def invented_names(draw: st.DrawFn) -> str:
    """A name that is no English or German word: consonant-vowel syllables, capitalized, 4-9 letters."""
    syllables = draw(st.lists(st.tuples(st.sampled_from("bdfgjklmnprtvz"), st.sampled_from("aeiou")),
                              min_size=2, max_size=4))
    word = "".join(c + v for c, v in syllables) + draw(st.sampled_from(["", "n", "r", "l", "s", "a"]))
    return word[0].upper() + word[1:]


@st.composite
def accented_names(draw: st.DrawFn) -> tuple[str, str]:
    """(stored, typed): an invented name with accents on some letters, typed without them or transliterated."""
    plain = draw(invented_names())
    positions = [i for i, c in enumerate(plain) if c in ACCENTED]
    chosen = draw(st.sets(st.sampled_from(positions), min_size=1)) if positions else set()
    stored = "".join(draw(st.sampled_from(ACCENTED[c])) if i in chosen else c for i, c in enumerate(plain))
    german = "".join(GERMAN.get(c, c) for c in stored)
    typed = draw(st.sampled_from([plain, german.translate(PLAIN)]))
    return stored, typed


NAME_TEMPLATES = ["Ask {} to water the plants", "{} takes the bins out", "Remind {} about the dentist",
                  "{}'s bike needs new brakes", "Fahrrad von {} reparieren", "{} muss den Rasen mähen",
                  "Pick up {} from school at 3", "Birthday present for {}!", "Call {}, then clean the oven",
                  "Geschenk für {} kaufen", "Appeler {} pour le gaz", "with {} and the dog", "{}: vacuum the stairs"]
