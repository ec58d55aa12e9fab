"""Email addresses (also obfuscated, `name(at)example.com`, and internationalized, `jörg@müller.de`), secrets (the
password of `user:pass@host`, the values of `?token=`-like URL parameters, API keys and long random tokens, and
what follows "password:", "PIN", "alarm code"...), and IP addresses."""

from __future__ import annotations

import ipaddress
import itertools
import re

from app.services.sanitize.doc import Doc, Spans, preceded_by_word_char

# -- email ------------------------------------------------------------------------------------------------------------
_AT = r"(?:@|\s*[(\[{<]\s*(?i:at|ät|@)\s*[)\]}>]\s*)"
_DOT = r"(?:\.|\s*[(\[{<]\s*(?i:dot|punkt|point|punto)\s*[)\]}>]\s*)"
_LOCAL = r"[\w!#$%&'*+=?^`~-]+(?:\.[\w!#$%&'*+=?^`~-]+)*"
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_EMAIL = re.compile(rf"(?<![\w.+-]){_LOCAL}{_AT}{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}[^\W\d_]{{2,}}(?![\w-])")
_EMAIL_TRIGGER = re.compile(r"@|[(\[{<]\s*(?:at|ät)\s*[)\]}>]")  # in the lower-cased text
_TLDS = r"com|org|net|de|fr|uk|co|io|eu|info|edu|gov|ch|at|es|it|nl|be|ie|us|ca|au|me|biz|pl|se|dk|no|fi|pt"
_EMAIL_WORDS = re.compile(rf"(?<![\w.+-])[\w.+-]+\s+(?i:at)\s+{_LABEL}(?:\s+(?i:dot)\s+{_LABEL})*"
                          rf"\s+(?i:dot)\s+(?i:{_TLDS})(?![\w-])")
_DOT_WORD = re.compile(r"\sdot\s")


def emails(doc: Doc) -> Spans:
    out = [m.span() for lo, hi in doc.windows(_EMAIL_TRIGGER, lower=True) for m in _EMAIL.finditer(doc.text, lo, hi)]
    out += [m.span() for lo, hi in doc.windows(_DOT_WORD, lower=True) for m in _EMAIL_WORDS.finditer(doc.text, lo, hi)]
    return out


# -- secrets ----------------------------------------------------------------------------------------------------------
# user:password@ in a URL; without a scheme only before an IP address, a port or a path ("Re:emma@x.com" is mail)
_USERINFO = re.compile(r"(?<=://)[\w.%+-]+:[^\s/@:]{1,128}(?=@[\w\[])"
                       r"|(?<![\w.%+:/-])[\w.%+-]+:[^\s/@:]{1,128}(?=@(?:\d{1,3}\.){3}\d|@[\w.-]+(?::\d|/))")
_AT_SIGN = re.compile("@")
# in the lower-cased text:
_SECRET_PARAM = re.compile(r"(?<![\w.\-])[\w.\-]*(?:token|secret|passw(?:or)?d|pass|pwd|auth|key|sig|signature"
                           r"|session|sid|code|otp|ticket|hash|jwt|credential)[\w.\-]*=([^&#\s\"'<>]{3,})")
_EQUALS = re.compile("=")
_KNOWN_KEYS = re.compile(r"(?:(?:sk|pk|rk)[-_](?:live|test|proj)?[-_]?[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{30,}"
                         r"|github_pat_\w{20,}|xox[abprs]-[\w-]{10,}|AKIA[0-9A-Z]{16}|AIza[\w-]{35}|glpat-[\w-]{20,}"
                         r"|npm_\w{36}|eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,})(?![\w-])")
_TOKEN = re.compile(r"[A-Za-z0-9](?<![\w-][A-Za-z0-9])[A-Za-z0-9_\-]{19,}={0,2}(?![\w-])")
# in the lower-cased text. A password may hold spaces: after "password:" up to four words, to the end of the
# sentence or the next label ("... 14: next task").
_PHRASE_WORDS = (r"password|passwort|kennwort|passphrase|pwd|pass(?=[ \t]*[:=])|wi-?fi[ -]?(?:password|key)"
                 r"|wlan[ -]?(?:passwort|schlüssel|key)|mot de passe|contraseña|clave")
_CODE = (r"passcode|pin(?:[ -]?code)?|pin-nummer|(?:alarm|door|gate|safe|lock|access|security|entry|garage"
         r"|key[ -]?safe)[ -]?code|alarmcode|türcode|tuercode|torcode|zahlencode|tresorcode|zugangscode"
         r"|sicherheitscode|wi-?fi[ -]?code|wlan[ -]?code|code d'accès|digicode")
_TAIL = "[.,;:!?)\\]}\"']"
_CUED_PASSWORD = re.compile(rf"\b(?:{_PHRASE_WORDS})\b[ \t]*[:=][ \t]*([^\s&,;]+(?:[ \t]+[^\s,;:]+){{0,3}}?)"
                            rf"(?={_TAIL}*(?:[,;\n]|[.!?](?:\s|$)|$)|[ \t]+[^\s,;]+:)")  # up to 4 words
_CUED = re.compile(rf"\b(?:{_PHRASE_WORDS}|{_CODE})\b(?:[ \t]*(?:[:=]|is|ist|lautet|est|es)[ \t]*|[ \t]+(?=\S{{3,}})"
                   rf"(?=\S*\d))([^\s&]*?[^\s&.,;:!?)\]}}\"'])(?={_TAIL}*(?:[\s&]|$))")


def _random(token: str) -> bool:
    """Looks generated: long hex, or letters and digits mixed throughout."""
    if re.fullmatch(r"[0-9a-fA-F]{32,}", token):
        return True
    digits = sum(c.isdigit() for c in token)
    letters = len(token) - digits
    switches = sum(a.isdigit() != b.isdigit() for a, b in itertools.pairwise(token))
    mixed_case = any(c.isupper() for c in token) and any(c.islower() for c in token)
    return digits >= 2 and letters >= 2 and (switches >= 4 or (mixed_case and digits >= 3))


def secrets(doc: Doc) -> Spans:
    """What a text says is secret, or structurally is: cued passwords and codes, URL credentials and parameters."""
    text = doc.text
    out = [m.span() for lo, hi in doc.windows(_AT_SIGN, reach=140) for m in _USERINFO.finditer(text, lo, hi)]
    out += [m.span(1) for lo, hi in doc.windows(_EQUALS, reach=60) for m in _SECRET_PARAM.finditer(doc.low, lo, hi)]
    out += [m.span() for m in _KNOWN_KEYS.finditer(text) if not preceded_by_word_char(text, m.start(), "-")]
    out += [m.span(1) for m in _CUED_PASSWORD.finditer(doc.low)]
    out += [m.span(1) for m in _CUED.finditer(doc.low)]
    return out


def tokens(doc: Doc) -> Spans:
    """Long random-looking tokens anywhere (a reset link's path, a key pasted alone)."""
    text = doc.text
    return [m.span() for m in _TOKEN.finditer(text) if _random(re.sub(r"[-_=]", "", m.group()))]


# -- IP addresses -----------------------------------------------------------------------------------------------------
_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_IPV6_TRIGGER = re.compile(r":[0-9A-Fa-f]{0,4}:")


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_VERSION_BEFORE = re.compile(r"(?:\bv|\bversion|\bver\.?|\brelease|\bfirmware|\bbuild)[ \t]*$")  # in `low`


def ips(doc: Doc) -> Spans:
    text = doc.text
    found = [m for m in _IPV4.finditer(text) if not _VERSION_BEFORE.search(doc.low, max(0, m.start() - 12), m.start())]
    found += [m for lo, hi in doc.windows(_IPV6_TRIGGER, reach=40) for m in _IPV6.finditer(text, lo, hi)]
    return [m.span() for m in found if _ip(m.group())]
