"""Account and phone numbers. IBANs and cards are found by their checksums, whatever follows them: a candidate run
of characters is cut to the length the IBAN's country prescribes (or to the card's groups) before it is checked,
so "DE89 3704 0044 0532 0130 00 EUR 50" and "4111 1111 1111 1111 12/27" are found as well as the bare numbers."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import phonenumbers
import stdnum.numdb

from app.services.sanitize.doc import Doc, Spans, preceded_by_word_char

# -- IBAN -------------------------------------------------------------------------------------------------------------
# anchored on the check digits, which follow the two letters of the country
_IBAN = re.compile(r"\d(?<=[A-Za-z]{2}\d)\d(?:[ \-]{0,3}[A-Za-z0-9]){10,32}")
_IBAN_DB = stdnum.numdb.get("iban")


@functools.cache
def _iban_format(country: str) -> tuple[int, re.Pattern[str]] | None:
    """The length of the country's IBANs and the pattern of their account part (python-stdnum's registry)."""
    bban = _IBAN_DB.info(country)[0][1].get("bban")
    if not bban:
        return None
    parts = re.findall(r"(\d+)!([nac])", bban)
    chars = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}
    return 4 + sum(int(n) for n, _ in parts), re.compile("".join(f"{chars[c]}{{{n}}}" for n, c in parts))


def _iban_valid(compact: str, account: re.Pattern[str]) -> bool:
    """The ISO 13616 check (mod 97 of the rearranged number is 1) and the country's structure: what
    `stdnum.iban.is_valid(number, check_country=False)` checks, without its per-call parsing of the registry."""
    if not account.fullmatch(compact, 4) or not compact[2:4].isdigit():
        return False
    return int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1


def ibans(doc: Doc) -> Spans:
    """IBANs in any case, compact or in groups (spaces or dashes), followed by anything."""
    text = doc.text
    out: Spans = []
    pos = 0
    while m := _IBAN.search(text, pos):
        start = m.start() - 2
        candidate = text[start:m.end()]
        form = _iban_format(candidate[:2].upper())
        chars = [i for i, c in enumerate(candidate) if c.isalnum()]
        if form is not None and len(chars) >= form[0] and not preceded_by_word_char(text, start):
            end = chars[form[0] - 1] + 1
            compact = "".join(candidate[i] for i in chars[:form[0]]).upper()
            glued = end < len(candidate) and candidate[end].isalnum()
            if not glued and _iban_valid(compact, form[1]):
                out.append((start, start + end))
                pos = start + end
                continue
        pos = m.start() + 1
    return out


# -- payment cards ----------------------------------------------------------------------------------------------------
_CARD_RUN = re.compile(r"\d(?<!\d\d)(?:[ \-]{0,2}\d){12,60}")  # 13 digits or more, in groups
# How card numbers are grouped when written: 4-4-4-4, 4-6-5 (Amex), 4-6-4 (Diners), 4-4-4-4-3, 4-4-4-1, or not at all.
_GROUPINGS = {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 1)}
_BRAND_LENGTHS = {"2": (16,), "3": (14, 15, 16, 17, 18, 19), "4": (13, 16, 19), "5": (16, 17, 18, 19),
                  "6": (16, 17, 18, 19)}


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card_ok(digits: str) -> bool:
    lengths = _BRAND_LENGTHS.get(digits[0], ())
    return len(digits) in lengths and len(set(digits)) > 1 and _luhn(digits)


def cards(doc: Doc) -> Spans:
    """Luhn-valid numbers of a card brand's length, read out of a longer run of digit groups ("4111 1111 1111 1111
    12/27", "ref 12 4111 ..."): a reading grouped as cards are written wins, then the longer one."""
    out: Spans = []
    for run in _CARD_RUN.finditer(doc.text):
        groups = [(run.start() + g.start(), run.start() + g.end(), g.group()) for g in re.finditer(r"\d+", run.group())]
        k = 0
        while k < len(groups):
            best: tuple[bool, int, int, int] | None = None  # (badly grouped, -length, first group, last group)
            for i in range(k, len(groups)):
                digits = ""
                for j in range(i, len(groups)):
                    digits += groups[j][2]
                    if len(digits) > 19:
                        break
                    if len(digits) >= 13 and _card_ok(digits):
                        shape = tuple(len(g[2]) for g in groups[i:j + 1])
                        cand = (len(shape) > 1 and shape not in _GROUPINGS, -len(digits), i, j)
                        best = cand if best is None or cand < best else best
            if best is None:
                break
            i, j = best[2], best[3]
            out.append((groups[i][0], groups[j][1]))
            k = j + 1
    return out


# -- phone numbers ----------------------------------------------------------------------------------------------------
_PHONE_WINDOW = re.compile(r"\d(?<!\d\d)(?:[ \t().\-/\u2010-\u2015]{0,3}\d){6,}")  # 7 digits or more
_DATEISH = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$|^\d{1,2}:\d{2}|^(?:19|20)\d{2}[-/](?:19|20)?\d{2}$"
                      r"|^\d{1,2}/\d{2}$")
_THOUSANDS = re.compile(r"^[1-9]\d{0,2}(?:([.,  ])\d{3})(?:\1\d{3})*$")
_PHONE_CUE = re.compile(r"(?i:\b(?:call|ring|phone|tel|telephone|mobile|cell|handy|fon|telefon|mobil|tél|téléphone"
                        r"|portable|móvil|movil|teléfono|telefono|cellulare|llamar|appeler|anrufen|whatsapp|sms|text"
                        r"|fax|contact|kontakt)\b)[^\n\d]{0,20}$")
# A reference number, not a phone number ("Order #123456789", "Invoice 2024-0001234").
_REFERENCE_CUE = re.compile(r"(?i:\b(?:order|invoice|rechnung|facture|factura|ref|reference|booking|buchung|ticket"
                            r"|tracking|sendung|parcel|paket|serial|model|article|artikel|art|isbn|ean|item|customer"
                            r"|kunden|account|konto|contract|vertrag|policy|police)\b"
                            r"(?:[ \t]*(?:no|nr|number|nummer|numéro|num)\b)?\.?|#)[ \t:.#-]*$")
_UNIT_AFTER = re.compile(r"[ \t]*(?:[x×%€$£]|(?i:eur|euros?|usd|gbp|chf|kg|mg|ml|cm|mm|km|steps|times|mal|stück|pcs"
                         r"|pieces|items|grains|points|punkte|kcal|mah|kwh|rpm|dpi|px)\b)")
_DIGITS_BEFORE = re.compile(r"\d[ \-./]?$")  # the number goes on to the left: part of something longer
_CURRENCY_BEFORE = re.compile(r"[€$£¥][ \t]?$")


def phones(doc: Doc, regions: Sequence[str] = ()) -> Spans:
    """Numbers libphonenumber calls valid for one of `regions`, or possible ones written internationally (`+972`,
    `0044`) or after a phone word ("call", "Handy", "tél"); never dates, times, prices or quantities."""
    text = doc.text
    out: set[tuple[int, int]] = set()
    for window in _PHONE_WINDOW.finditer(text):
        lo = max(0, window.start() - 4)  # a leading "+" or "(" and what comes before it
        hi = min(len(text), window.end() + 2)
        chunk = text[lo:hi]
        international = "+" in text[lo:window.start()]
        if not international and _DATEISH.match(window.group()):
            continue
        for region in regions[:1] if international else regions:  # "+44 ..." reads the same in every region
            found = [(lo + m.start, lo + m.end)
                     for m in phonenumbers.PhoneNumberMatcher(chunk, region, leniency=phonenumbers.Leniency.POSSIBLE)
                     if _is_phone(text, lo + m.start, lo + m.end, m.raw_string, m.number)]
            if found:  # the first region that reads a phone number here decides
                out.update(found)
                break
    return sorted(out)


def _is_phone(text: str, start: int, end: int, raw: str, number: phonenumbers.PhoneNumber) -> bool:
    digits = sum(c.isdigit() for c in raw)
    if digits < 7 or (not raw.startswith("+") and any(_DATEISH.match(part) for part in raw.split())):
        return False  # a date, a time or a card's expiry read as a number
    cue = _PHONE_CUE.search(text, max(0, start - 40), start) is not None
    quantity = (_THOUSANDS.match(raw) or _UNIT_AFTER.match(text, end)
                or _CURRENCY_BEFORE.search(text, max(0, start - 3), start)
                or _REFERENCE_CUE.search(text, max(0, start - 24), start)
                or _DIGITS_BEFORE.search(text, max(0, start - 2), start))
    if quantity and not cue:
        return False  # "1.234.567 grains", "1 250 000 euros", "€ 1250000", "Order #123456789", "DE00 3704 0044 ..."
    international = raw.startswith("+") or (raw.startswith("00") and digits >= 9)
    return cue or international or phonenumbers.is_valid_number(number)
