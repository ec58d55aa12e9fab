"""Dates of birth. A date is one only next to a birth word ("born", "DOB", "birthday", "geboren", "Geburtstag",
"né", "nacido", "nato", ...): the first date after it in the same sentence (within 30 characters), or else the
last one just before it ("12.03.1985 geboren"). Other dates (due dates, appointments) stay, as answers need them.
With a birth word, a day and month without a year count too ("birthday is 12 June"), and so does a bare year
("born in 1985")."""

from __future__ import annotations

import re

from app.services.sanitize.doc import Doc, Spans

_MONTHS = (r"jan(?:uary|uar|vier|eiro)?|jänner|feb(?:ruary|ruar|rero)?|février|mar(?:ch|s|zo)?|märz|maerz|apr(?:il)?"
           r"|avril|abril|aprile|may|mai|mayo|maggio|jun(?:e|i|io)?|juin|jul(?:y|i|io)?|juillet|luglio|aug(?:ust)?"
           r"|août|agosto|sep(?:t|tember|tembre|tiembre)?|settembre|oct(?:ober|obre|ubre)?|okt(?:ober)?|ottobre"
           r"|nov(?:ember|embre|iembre)?|dec(?:ember)?|dez(?:ember)?|décembre|diciembre|dicembre|gennaio|enero"
           r"|febbraio|giugno|mei|maart|augustus")
_DAY = r"(?:[12]\d|3[01]|0?[1-9])"
_DATE = re.compile(
    rf"(?<![\w.])(?:"
    rf"\d{{4}}-\d{{1,2}}-\d{{1,2}}"  # ISO
    rf"|{_DAY}[./-] ?\d{{1,2}}[./-] ?(?:\d{{4}}|\d{{2}})"  # 12.03.1985, 12/03/85
    rf"|{_DAY}(?:st|nd|rd|th|er|\.)?\s+(?:of\s+|de\s+)?(?i:{_MONTHS})\.?(?:,?\s+(?:de\s+)?\d{{4}})?"  # 3 March 1985
    rf"|(?i:{_MONTHS})\.?\s+{_DAY}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"  # March 3rd, 1985
    rf"|{_DAY}\.\s?\d{{1,2}}\.(?!\d)"  # 12.03. (German, no year)
    rf")(?![\w])")
_BIRTH = re.compile(  # in the lower-cased text
    r"\b(?:born|birth|date of birth|dob|d\.o\.b\.?|geboren|geb\.|geburtsdatum|geb\.-datum|née?|naissance"
    r"|date de naissance|nacid[oa]|fecha de nacimiento|nacimiento|nat[oa]|data di nascita|geboortedatum|jahrgang"
    r"|(birthday|b-?day|b'day|geburtstag|anniversaire|cumpleaños|compleanno|verjaardag|jarig))(?!\w)")
# A birthday's date is the one the sentence gives it ("birthday is 12 June"), not any date after the word
# ("birthday presents on 12/06/2025" is a shopping day).
_BIRTHDAY_LINK = re.compile(r"(?i:[ \t]*(?:[:=]|is|was|ist|war|am|on|est|le|es|el|il|è|op)?[ \t]*)+")
_YEAR_AFTER = re.compile(r"[ \t]+(?:(?i:in|im jahr|en|nel|in het)[ \t]+)?((?:19|20)\d{2})(?!\d)")
_BREAK = re.compile(r"(?<=[^\W\d_])[.!?](?:\s|$)|[;\n]")  # a sentence ends (not "12. März")


def births(doc: Doc) -> Spans:
    text = doc.text
    out: Spans = []
    for cue in _BIRTH.finditer(doc.low):
        after = text[cue.end():cue.end() + 40]
        cut = _BREAK.search(after)
        window = after[:cut.start()] if cut else after
        date = _DATE.search(window)
        if date and cue.group(1) and _BIRTHDAY_LINK.fullmatch(window, 0, date.start()) is None:
            date = None
        if date and date.start() <= 30:
            out.append((cue.end() + date.start(), cue.end() + date.end()))
            continue
        year = _YEAR_AFTER.match(text, cue.end())
        if year:
            out.append(year.span(1))
            continue
        lo = max(0, cue.start() - 24)
        before = [d for d in _DATE.finditer(text, lo, cue.start()) if not text[d.end():cue.start()].strip(" ,")]
        if before:
            out.append(before[-1].span())
    return out
