"""National identification numbers. Those with a distinctive shape or a check digit are found anywhere: US SSN
(3-2-4), UK National Insurance number, German Steuer-ID, French NIR, Spanish DNI/NIE, Italian codice fiscale, Swiss
AHV, Belgian national number (python-stdnum's validators). Any other number of five digits or more right after an
ID word ("passport", "BSN", "NHS number", "Ausweisnummer"...) is taken too."""

from __future__ import annotations

import re
from collections.abc import Callable

from stdnum.be import nn as be_nn
from stdnum.ch import ssn as ch_ahv
from stdnum.de import idnr as de_idnr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fr import nir as fr_nir
from stdnum.it import codicefiscale as it_cf

from app.services.sanitize.doc import Doc, Spans, preceded_by_word_char


def _ssn(value: str) -> bool:
    area, group, serial = re.split(r"[- ]", value)
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


# (pattern, validator of the match); each starts with the character class of its first character (see doc.py)
_SHAPED: list[tuple[re.Pattern[str], Callable[[str], bool]]] = [
    (re.compile(r"\d(?<![\w-]\d)\d{2}-\d{2}-\d{4}(?![\w-])"), _ssn),  # US SSN
    (re.compile(r"[A-Z](?<!\w[A-Z])[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)"), lambda v: True),  # UK NI number
    (re.compile(r"[1-9](?<![\w/][1-9])\d(?:[ /]?\d{3}){3}(?![\w/])"), lambda v: de_idnr.is_valid(re.sub(r"\D", "", v))),
    (re.compile(r"[12](?<!\w[12]) ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\w)"), fr_nir.is_valid),
    (re.compile(r"\d(?<!\w\d)\d{7}-?[A-Za-z](?!\w)"), es_dni.is_valid),
    (re.compile(r"[XYZxyz](?<!\w[XYZxyz])-?\d{7}-?[A-Za-z](?!\w)"), es_nie.is_valid),
    (re.compile(r"756(?<![\w.]756)[. ]?\d{4}[. ]?\d{4}[. ]?\d{2}(?![\w.])"), ch_ahv.is_valid),
    (re.compile(r"\d(?<![\w.]\d)\d\.\d{2}\.\d{2}-\d{3}\.\d{2}(?![\w.])"), be_nn.is_valid),
]
# Italian codice fiscale, anchored on its first digit: six letters, 2 digits, letter, 2 digits, letter, 3 digits, letter
_CODICE = re.compile(r"\d(?<=[A-Za-z]{6}\d)\d[A-Za-z]\d{2}[A-Za-z]\d{3}[A-Za-z](?!\w)")

_ID_WORDS = (r"ssn|social[ -]security(?:[ -]number)?|national[ -]insurance(?:[ -]number)?|ni[ -](?:number|no)|nino"
             r"|nhs(?:[ -]number)?|steuer[ -]?id|steuer[ -]?identifikationsnummer|steuernummer|idnr|tax[ -]id"
             r"|personalausweis(?:nummer)?|ausweis(?:nummer)?|reisepass(?:nummer)?|passport(?:[ -]number)?"
             r"|passeport|carte d'identité|sécu|sécurité sociale|nir|insee|dni|nie|nif|nss|codice fiscale"
             r"|bsn|burgerservicenummer|ahv(?:-nummer)?|avs|svnr|sozialversicherungsnummer|versicherungsnummer"
             r"|rijksregisternummer|driver'?s licen[cs]e(?: number)?|führerschein(?:nummer)?|id[ -]number|id-nummer"
             r"|personnummer|personal number")
# in the lower-cased text
_CUED = re.compile(rf"\b(?:{_ID_WORDS})\b[ \t]*(?:(?:no|nr|number|nummer|numéro|num)\.?[ \t]*)?[:#=]?[ \t]*"
                   r"(?:(?:is|ist|est|es)[ \t]+)?"
                   r"((?=[a-z0-9 .\-/]*\d)[a-z]{0,3}\d[\da-z]*(?:[ .\-/]\d[\da-z]*){0,5})")


def national_ids(doc: Doc) -> Spans:
    text = doc.text
    out = [m.span() for pattern, valid in _SHAPED for m in pattern.finditer(text) if valid(m.group())]
    for m in _CODICE.finditer(text):
        start = m.start() - 6
        if not preceded_by_word_char(text, start) and it_cf.is_valid(text[start:m.end()]):
            out.append((start, m.end()))
    shaped = list(out)
    for m in _CUED.finditer(doc.low):
        a, b = m.span(1)
        if sum(c.isdigit() for c in m.group(1)) >= 5 and not any(s < b and a < e for s, e in shaped):
            out.append((a, b))  # a number after an ID word, unless its shape already said what it is
    return out
