"""Street addresses, postcodes and number plates.

Addresses: a house number and a street word in the order each language writes them ("12 baker street",
"12 bis rue de Rivoli", "Hauptstraße 5", "Am Markt 3", "Calle Mayor 3", "Keizersgracht 123"), in any case where
the street word says "street" unambiguously. Street words that are also everyday words ("way", "court", "place",
"Platz", "Ring", "Weg") need a capitalized street name, and a number followed by a unit or a noun ("2 times",
"3 Kuchen") is a quantity, never a house number: "Reset the 2 way switch", "3 ring binder", "Parkplatz 3",
"Ring Grandma 2 times a week" stay as they are."""

from __future__ import annotations

import re

from app.services.sanitize.doc import Doc, Spans, preceded_by_word_char
from app.services.sanitize.words import COMMON_WORDS, FUNCTION_WORDS, UNITS, word_set

_NOT_A_STREET_NAME = FUNCTION_WORDS | UNITS | word_set(
    "along across around down through into onto near behind past towards toward beside between under")
_UNIT_OR_NOUN_AFTER = re.compile(r"[ \t]*(?:([^\W\d_][\w'’]*)|\d)")
_NUM = r"\d{1,5}[A-Za-z]?"


def _quantity_after(text: str, end: int, nouns: bool = False) -> bool:
    """What follows a number makes it a quantity: a unit, a digit, or (with `nouns`, German) a capitalized noun."""
    m = _UNIT_OR_NOUN_AFTER.match(text, end)
    if m is None:
        return False
    word = m.group(1)
    return word is None or word.casefold() in UNITS or (nouns and word[0].isupper())


# -- number first: English and French ---------------------------------------------------------------------------------
_EN_LOOSE = r"street|st|road|rd|avenue|ave|lane|ln|drive|boulevard|blvd|crescent|cres|terrace|gardens|grove|mews"
_EN_STRICT = r"way|close|place|court|ct|square|sq|row|walk|hill|green|park|view|rise|gate|yard|wharf|parade|vale"
# "12 baker street", "221B Baker Street", "250 W 57th St"
_EN = re.compile(rf"\d(?<![\w.,/-]\d)\d{{0,4}}[A-Za-z]?,?[ \t]+"
                 rf"((?:(?:[^\W\d_][\w'’.-]*|\d{{1,3}}(?i:st|nd|rd|th))[ \t]+){{1,3}})((?i:{_EN_LOOSE}|{_EN_STRICT}))"
                 r"\b\.?")
_EN_STRICT_SET = frozenset(_EN_STRICT.split("|"))
_FR_LOOSE = r"rue|avenue|av|boulevard|bd|impasse|chemin|allée|allee|quai|cours|sentier|voie"
_FR_STRICT = r"place|square|cité|promenade|esplanade|parvis|villa|hameau|route|passage"
_FR = re.compile(rf"\d(?<![\w.,/-]\d)\d{{0,3}}(?:[ \t]?(?i:bis|ter|quater|[a-z]))?,?[ \t]+"
                 rf"((?i:{_FR_LOOSE}|{_FR_STRICT}))\.?[ \t]+((?:(?i:de la|de l'|des|du|de|d')[ \t]*)?)"
                 r"((?:[^\W\d_][\w'’-]*)(?:[ \t]+[^\W\d_][\w'’-]*){0,2})")
_FR_STRICT_SET = frozenset(_FR_STRICT.split("|"))


def _number_first(text: str) -> Spans:
    out: Spans = []
    for m in _EN.finditer(text):
        words = m.group(1).split()
        if any(w.casefold().strip(".") in _NOT_A_STREET_NAME and not (len(w) == 1 and w.isupper()) for w in words):
            continue
        if m.group(2).casefold() in _EN_STRICT_SET and not all(w[0].isupper() or w[0].isdigit() for w in words):
            continue
        out.append(m.span())
    for m in _FR.finditer(text):
        if m.group(1).casefold() in _FR_STRICT_SET and not (m.group(2) or m.group(3)[0].isupper()):
            continue
        names = m.group(3).split()
        keep = 0
        for w in names:
            if w.islower() and w in _NOT_A_STREET_NAME:
                break
            keep += 1
        if keep:
            end = m.start(3) + len(" ".join(names[:keep])) if keep < len(names) else m.end()
            out.append((m.start(), end))
    return out


# -- number last: German, Dutch, Spanish, Italian, Portuguese ---------------------------------------------------------
# A number after a word and a space ("Hauptstraße 5", "Calle Mayor, 3"); what precedes it is then looked at.
_NUMBER_AFTER_WORD = re.compile(r"\d(?<=[ \t]\d)")
_DE_NUM = re.compile(r"\d{1,4}(?:[ \t]?[a-zA-Z](?![\w]))?(?:[ \t]?[-–/][ \t]?\d{1,4}[a-z]?)?(?![\w])")
_SHORT_NUM = re.compile(r"\d{1,3}(?:[ \t]?[a-z](?![\w]))?(?![\w])")
_PLAIN_NUM = re.compile(rf"{_NUM}(?![\w])")
_STRONG = r"straße|strasse|str\.|gasse|allee|chaussee|straat|laan|gracht|plein|kade|singel"
_WEAK = r"weg|platz|ring|damm|ufer|markt|kai|graben|steig|pfad|dijk|steeg"
_COMPOUND = re.compile(rf"(?<![\w-])[^\W\d_][\w-]*?(?:({_STRONG})|({_WEAK}))[ \t]+$")  # in the lower-cased text
# Compounds of a weak street word that name no street.
_NOT_STREETS = word_set("""
parkplatz stellplatz spielplatz arbeitsplatz sitzplatz sportplatz tennisplatz golfplatz campingplatz zeltplatz
abstellplatz liegeplatz stehplatz schlafplatz bolzplatz fußballplatz fussballplatz rastplatz festplatz
dichtungsring schlüsselring schluesselring ohrring ehering fingerring boxring rettungsring serviettenring gummiring
o-ring radweg gehweg fußweg fussweg rückweg heimweg umweg ausweg hinweg arbeitsweg schulweg staudamm flohmarkt
supermarkt wochenmarkt weihnachtsmarkt baumarkt getränkemarkt
""")
# "Berliner Straße 12", "Alte Gasse 3"
_TWO_WORDS = re.compile(r"(?<![\w-])([A-ZÄÖÜ][\wäöüß-]*)[ \t]+(?:(?i:straße|strasse|str\.|gasse|allee|chaussee)|Weg"
                        r"|Platz|Ring|Damm|Ufer|Markt|Kai|Graben)[ \t]+$")
# "Am Markt 3", "An der Alster 12a", "Unter den Linden 77"
_PREP = re.compile(r"(?<![\w-])(?i:am|an der|an den|auf der|auf dem|im|in der|in den|zum|zur|unter den|hinter der"
                   r"|hinter dem|vor dem|bei der|beim|alter|alte|altes|neuer|neue|neues)[ \t]+([A-ZÄÖÜ][\wäöüß-]+)"
                   r"[ \t]+$")
_NOT_PLACES = word_set("""
montag dienstag mittwoch donnerstag freitag samstag sonnabend sonntag wochenende morgen abend mittag nachmittag
vormittag tag jahr monat anfang ende keller garten bad haus küche flur dach wohnzimmer schlafzimmer büro auto
""")
# Spanish, Italian, Portuguese, and French as Belgium and Switzerland write it ("Rue de la Paix 12")
_STREET_FIRST = (r"(?i:calle|c/|avenida|avda\.?|paseo|plaza|pza\.?|camino|carrer|carretera|ronda|travesía|rua"
                 r"|travessa|largo|praça|viale|piazza|piazzale|corso|vicolo|strada|lungomare|rue|boulevard|chemin"
                 r"|allée|impasse|quai)|Via|Avenue|Place|Route")
_OF = r"(?:(?i:de la|de los|de las|del|de|di|della|dei|delle|da|do|dos)[ \t]+)?"
_CAP = r"[A-ZÁÉÍÓÚÑÀÈÌÒÙÂÊÔÇ][\w'’-]*"
_SOUTH = re.compile(rf"(?<![\w-])(?:{_STREET_FIRST})[ \t]*{_OF}{_CAP}(?:[ \t]+{_OF}{_CAP}){{0,3}},?[ \t]+$")


def _weak_street(word: str, suffix: str, number: str) -> bool:
    """A compound of a street word that is also an everyday word ("Parkplatz", "Dichtungsring") names no street;
    nor does an English word ending in "ring" ("Spring 2025", "Offering 3")."""
    stem = word[: -len(suffix)].rstrip("-")
    if word.casefold() in _NOT_STREETS or len(stem) < 3 or len(re.sub(r"\D", "", number)) > 3:
        return False
    return suffix != "ring" or (word[0].isupper() and stem[-1].casefold() not in "aeiouy")


def _compound(text: str, low: str, lo: int, at: int) -> tuple[int, int] | None:
    num, m = _DE_NUM.match(text, at), _COMPOUND.search(low, lo, at)
    if not (num and m):
        return None
    weak = m.group(2)
    if weak and not _weak_street(text[m.start():m.end(2)], weak, num.group()):
        return None
    return None if _quantity_after(text, num.end(), nouns=bool(weak)) else (m.start(), num.end())


def _before(pattern: re.Pattern[str], number: re.Pattern[str], text: str, lo: int, at: int,
            nouns: bool = False, exclude: frozenset[str] = frozenset()) -> tuple[int, int] | None:
    num, m = number.match(text, at), pattern.search(text, lo, at)
    if not (num and m) or (m.groups() and m.group(1).casefold() in exclude):
        return None
    return None if _quantity_after(text, num.end(), nouns) else (m.start(), num.end())


_SUFFIXES = tuple(w.replace("\\", "") for w in f"{_STRONG}|{_WEAK}".split("|"))
_TWO_WORDS_STREETS = word_set("straße strasse str. gasse allee chaussee weg platz ring damm ufer markt kai graben")


def _number_last(doc: Doc) -> Spans:
    text, low = doc.text, doc.low
    out: Spans = []
    for n in _NUMBER_AFTER_WORD.finditer(text):
        at, lo = n.start(), max(0, n.start() - 90)
        # the word before the number decides which forms can apply (a cheap test before the patterns)
        end = at
        while end > lo and text[end - 1] in " \t,":
            end -= 1
        start = low.rfind(" ", lo, end) + 1 or lo
        word = low[start:end]
        span = None
        if word.endswith(_SUFFIXES):
            span = _compound(text, low, lo, at)
        if not span and word in _TWO_WORDS_STREETS:
            span = _before(_TWO_WORDS, _DE_NUM, text, lo, at, exclude=FUNCTION_WORDS)
        if not span and text[start:start + 1].isupper():
            span = (_before(_PREP, _SHORT_NUM, text, lo, at, nouns=True, exclude=_NOT_PLACES)
                    or _before(_SOUTH, _PLAIN_NUM, text, lo, at))
        if span:
            out.append(span)
    return out


def addresses(doc: Doc) -> Spans:
    return _number_first(doc.text) + _number_last(doc)


# -- postcodes ------------------------------------------------------------------------------------------------------
_UK_AREAS = word_set("""
AB AL BA BB BD BH BL BN BR BS BT CA CB CF CH CM CO CR CT CV CW DA DD DE DG DH DL DN DT DY EC EH EN EX FK FY GL GU GY HA
HD HG HP HR HS HU HX IG IM IP IV JE KA KT KW KY LA LD LE LL LN LS LU ME MK ML NE NG NN NP NR NW OL OX PA PE PH PL PO PR
RG RH RM SA SE SG SK SL SM SN SO SP SR SS ST SW SY TA TD TF TN TQ TR TS TW UB WA WC WD WF WN WR WS WV YO ZE B E G L M N
S W
""")
# anchored on the outward code's digit; its one or two letters are looked at before it
_UK = re.compile(r"\d(?<=[A-Za-z]\d)[A-Za-z\d]?[ \t]{0,2}\d(?i:[ABD-HJLNP-UW-Z]{2})(?![\w-])")
_US_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC"
              "|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY")
_ZIP = re.compile(r"\d(?<![\w-]\d)\d{4}(-\d{4})?(?![\w-])")
_STATE_BEFORE = re.compile(rf"(?<![\w-])(?:{_US_STATES})[ \t]+$")
_CANADA = re.compile(r"[ABCEGHJ-NPRSTVXY](?<![\w-][ABCEGHJ-NPRSTVXY])\d[A-Z][ \t]?\d[A-Z]\d(?![\w-])")
_PREFIXED = re.compile(r"-\d{4,5}(?![\w-])")  # "D-80331", "CH-8001": the country is looked at before the dash
_COUNTRIES = word_set("D A CH F B L NL I E P")
_COUNTRY_BEFORE = re.compile(r"[A-Z]{1,2}$")
_CODE = r"(?:\d{4,5}|[1-9]\d{3}[ \t]?[a-zA-Z]{2}|\d{2}-\d{3})"
_CUED = re.compile(rf"\b(?:plz|postleitzahl|postcode|post code|postal code|zip(?: code)?|code postal|código postal"
                   rf"|codigo postal)\b[ \t:.]*({_CODE})(?![\w-])")  # in the lower-cased text
_CUED_UPPER = re.compile(rf"C(?<!\wC)A?P\b[ \t:.]*({_CODE})(?![\w-])")  # CP (France, Spain), CAP (Italy)
_AFTER_ADDRESS = re.compile(rf"[ \t]*,?[ \t]*\n?[ \t]*({_CODE})(?=[ \t]+[^\W\d_]|[ \t]*(?:,|$))")


def _uk(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    start = m.start()
    while start > m.start() - 2 and start > 0 and text[start - 1].isascii() and text[start - 1].isalpha():
        start -= 1
    if text[start:m.start()].upper() not in _UK_AREAS or preceded_by_word_char(text, start, "-"):
        return None
    if re.search(r"\d(?:st|nd|rd|th)$", m.group(), re.IGNORECASE):
        return None  # "B1 3rd" is a floor
    return start, m.end()


def postcodes(doc: Doc) -> Spans:
    text = doc.text
    out = [s for m in _UK.finditer(text) if (s := _uk(text, m))]
    out += [m.span() for m in _ZIP.finditer(text)  # ZIP+4, or five digits after a state
            if m.group(1) or _STATE_BEFORE.search(text, max(0, m.start() - 6), m.start())]
    out += [m.span() for m in _CANADA.finditer(text)]
    for m in _PREFIXED.finditer(text):
        country = _COUNTRY_BEFORE.search(text, max(0, m.start() - 2), m.start())
        if country and country.group() in _COUNTRIES and not preceded_by_word_char(text, country.start(), "-"):
            out.append((country.start(), m.end()))
    out += [m.span(1) for m in _CUED.finditer(doc.low)]
    out += [m.span(1) for m in _CUED_UPPER.finditer(text)]
    for _, end, kind in doc.found:
        if kind == "ADDRESS" and (after := _AFTER_ADDRESS.match(text, end)):
            out.append(after.span(1))
    return out


# -- number plates ----------------------------------------------------------------------------------------------------
_NOT_DISTRICTS = word_set("USB LED DVB HDMI ISO DIN EN IEC IP UV TV PC HD UHD SD CD DVD MP PS AC DC GPS LTE EU UK US "
                          "VAT WI PH XL COVID SARS ABS ESP")
# UK: two letters, two digits, three letters, in any case (anchored on the first digit; "rm12 the" is no plate)
_UK_PLATE = re.compile(r"\d(?<=[A-Za-z]{2}\d)\d[ \t]{0,2}([A-Za-z]{3})(?![\w-])")
_DE_PLATE = re.compile(r"([A-ZÄÖÜ](?<![\w-][A-ZÄÖÜ])[A-ZÄÖÜ]{0,2})-[A-Z]{1,2}[ \t-]?[1-9]\d{0,3}[EH]?(?![\w-]|\.\d)")
_FR_IT_PLATE = re.compile(r"[A-Z](?<![\w-][A-Z])[A-Z]([- ]?)\d{3}\1[A-Z]{2}(?![\w-])")
_NL_PLATE = re.compile(r"[A-Z\d](?<![\w-][A-Z\d])[A-Z\d]{0,2}-[A-Z\d]{2,3}-[A-Z\d]{1,3}(?![\w-])")
_PLATE_CUE = re.compile(r"\b(?:number plate|licen[cs]e plate|plate|reg(?:istration)?(?: number| no\.?| plate)?"
                        r"|kennzeichen|nummernschild|immatriculation|plaque|matr[ií]cula|targa|kenteken)\b"
                        r"[ \t:#.]*((?:[a-zäöü0-9]{1,4}(?:[ \t-]|$)?){1,4})")  # in the lower-cased text


def _nl(group: str) -> bool:
    """Dutch plates: six characters in three groups of only letters or only digits, both kinds present."""
    parts = group.split("-")
    return (sum(map(len, parts)) == 6 and all(p.isalpha() or p.isdigit() for p in parts)
            and any(p.isalpha() for p in parts) and any(p.isdigit() for p in parts))


def _cued_plate(m: re.Match[str]) -> tuple[int, int] | None:
    start = m.start(1)
    end, alnum, digits = start, 0, 0
    for g in re.finditer(r"[a-zäöü0-9]+", m.group(1)):
        word = g.group()
        if word in _NOT_A_STREET_NAME or alnum + len(word) > 8:
            break
        alnum += len(word)
        digits += sum(c.isdigit() for c in word)
        end = start + g.end()
    return (start, end) if alnum >= 4 and digits else None


def plates(doc: Doc) -> Spans:
    text = doc.text
    out = [(m.start() - 2, m.end()) for m in _UK_PLATE.finditer(text)
           if not preceded_by_word_char(text, m.start() - 2, "-") and m.group(1).casefold() not in COMMON_WORDS]
    out += [m.span() for m in _FR_IT_PLATE.finditer(text)]
    out += [m.span() for m in _DE_PLATE.finditer(text) if m.group(1) not in _NOT_DISTRICTS]
    out += [m.span() for m in _NL_PLATE.finditer(text) if _nl(m.group())]
    out += [s for m in _PLATE_CUE.finditer(doc.low) if (s := _cued_plate(m))]
    return out
