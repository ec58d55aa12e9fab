"""Email addresses (obfuscated, internationalized), secrets in URLs and texts, dates of birth (issue 18, point 4)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.sanitize import Sanitizer
from tests.unit.sanitize_cases import FAMILY, roundtrips

S = Sanitizer([])


@pytest.mark.parametrize(("text", "secret"), [
    ("Mail name(at)example.com about it", "name(at)example.com"),
    ("Mail name [at] example [dot] com about it", "name [at] example [dot] com"),
    ("write to name AT example DOT com", "name AT example DOT com"),
    ("write to emma.smith at example dot co dot uk", "emma.smith at example dot co dot uk"),
    ("Kontakt: jörg@müller.de", "jörg@müller.de"),
    ("Mail jörg{at}müller{punkt}de", "jörg{at}müller{punkt}de"),
    ("Mail name (at) example (dot) com", "name (at) example (dot) com"),
    ("mailto:emma+bills@example.co.uk?subject=rent", "emma+bills@example.co.uk"),
    ("Écrire à françois.dupont@exemple.fr", "françois.dupont@exemple.fr"),
    ("Почта: иван@пример.рф", "иван@пример.рф"),
    ("Mail a_.b@example.com about it", "a_.b@example.com"), ("Mail _emma@example.com_ now", "emma@example.com"),
])
def test_emails(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text and "[EMAIL_1]" in out.text, out


@FAMILY
@given(st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzäöüéñ._+-0123456789"), min_size=1, max_size=12)
       .filter(lambda s: s[0].isalnum() and s[-1].isalnum() and ".." not in s),
       st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzäöüé-"), min_size=2, max_size=10)
       .filter(lambda s: s[0].isalpha() and s[-1].isalpha()),
       st.sampled_from(["com", "de", "fr", "co.uk", "org", "info"]),
       st.sampled_from([("@", "."), ("(at)", "."), (" [at] ", " [dot] "), ("[at]", "[dot]"), (" (at) ", " (dot) "),
                        ("{at}", "."), (" AT ", " DOT "), (" at ", " dot ")]))
def test_any_email(local: str, domain: str, tld: str, seps: tuple[str, str]) -> None:
    at, dot = seps
    email = f"{local}{at}{domain}{dot}{tld.replace('.', dot)}"
    out = roundtrips(S, f"Mail {email} about the rent")
    assert email not in out.text and "[EMAIL_1]" in out.text, (email, out)
    assert not re.search(rf"(?<!\w){re.escape(domain)}(?!\w)", out.text), out


@pytest.mark.parametrize("text", ["Look at example.com for a new kettle", "Meet at home at 5", "Click the (at) sign",
                                  "Order at amazon.de", "Dot the i's and cross the t's"])
def test_texts_that_are_no_emails(text: str) -> None:
    assert S.sanitize(text).text == text


@pytest.mark.parametrize(("text", "secret", "kept"), [
    ("Reset at https://x.com/reset?token=abc123def456ghi", "abc123def456ghi", "https://x.com/reset?token="),
    ("https://example.com/login?user=emma&password=hunter2&lang=en", "hunter2", "&lang=en"),
    ("Router: http://admin:s3cret!@192.168.1.1/setup", "admin:s3cret!", "http://"),
    ("ftp://emma:pa55word@files.example.com/photos", "emma:pa55word", "@files.example.com/photos"),
    ("Join https://meet.example.com/j/8471920374?pwd=Zk9YbXhNQ2dVbE5yZz09", "Zk9YbXhNQ2dVbE5yZz09", "?pwd="),
    ("Invite: https://chat.example.com/invite/Xa7bQ9zLm2Rt5Kw8Yp4N", "Xa7bQ9zLm2Rt5Kw8Yp4N", "/invite/"),
    ("Key sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c", "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c", "Key "),
    ("token ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "token "),
    ("AWS AKIAIOSFODNN7EXAMPLE for backups", "AKIAIOSFODNN7EXAMPLE", "for backups"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "eyJhbGciOiJIUzI1NiJ9", "jwt "),
    ("long random 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "9f86d081884c7d659a2feaa0c55ad0",
     "long random "),
    ("WLAN-Passwort: Sonnenblume42", "Sonnenblume42", "WLAN-Passwort: "),
    ("the wifi password is sunflower", "sunflower", "the wifi password is "),
    ("Alarm code 4711, then open the door", "4711", "Alarm code "),
    ("PIN 1234 for the safe", "1234", "PIN "),
    ("Türcode 0815#", "0815", "Türcode "),
    ("api_key=abcd1234efgh5678", "abcd1234efgh5678", "api_key="),
    ("Password: correct horse battery staple", "correct horse battery staple", "Password: "),
    ("Wifi: MyNetwork / pass: hunter2", "hunter2", "MyNetwork"),
])
def test_secrets(text: str, secret: str, kept: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text and "[SECRET_1]" in out.text, out
    assert kept in out.text, out


@pytest.mark.parametrize("text", [
    "Read https://example.com/recipes/how-to-clean-your-oven-in-10-minutes",
    "Search https://shop.example.com/search?q=milk&page=2", "Change the PIN", "Reset the alarm code",
    "The dress code is smart casual", "Find the recipe at example.com/kitchen/descaling-guide-2024",
    "Order IKEA Billy shelf 80x28x202 cm, article 002.638.50", "Update the router firmware to v2.14.3-beta",
    "Pass the salt", "Ask for the password", "Change the Wi-Fi key tomorrow",
])
def test_texts_with_no_secrets(text: str) -> None:
    assert S.sanitize(text).text == text


# -- dates of birth -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "secret"), [
    ("Emma, born 12.03.1985", "12.03.1985"), ("DOB: 1985-03-12", "1985-03-12"), ("d.o.b. 12/03/85", "12/03/85"),
    ("date of birth 3 March 1985", "3 March 1985"), ("born on March 3rd, 1985", "March 3rd, 1985"),
    ("Geburtsdatum: 12. März 1985", "12. März 1985"), ("geb. 12.03.1985", "12.03.1985"),
    ("née le 3 mai 1985", "3 mai 1985"), ("fecha de nacimiento 3 de marzo de 1985", "3 de marzo de 1985"),
    ("nato il 3 marzo 1985", "3 marzo 1985"), ("12.03.1985 geboren", "12.03.1985"),
    ("Emma's birthday is 12 June", "12 June"), ("Geburtstag am 12. Juni", "12. Juni"),
    ("born in 1985 in Leeds", "1985"), ("Jahrgang 1985", "1985"),
])
def test_dates_of_birth(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text and "[DOB_1]" in out.text, out


@pytest.mark.parametrize("text", [
    "Pay the electricity bill of £84.20 by 15/06/2024", "Termin am 12.05.2024 um 14:30 Uhr",
    "Buy a birthday cake", "Birthday party on Saturday at 3", "Book the birthing class",
    "DOB: ask the doctor", "Renew the passport by 12 June 2025", "Born Free on TV at 8",
])
def test_dates_that_are_not_of_birth(text: str) -> None:
    assert S.sanitize(text).text == text


def test_only_the_date_next_to_the_birth_word() -> None:
    out = S.sanitize("DOB 12/03/1985, and pay the bill by 15/06/2024")
    assert out.text == "DOB [DOB_1], and pay the bill by 15/06/2024", out


# -- IP addresses (kept from before) --------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "secret"), [("Router at 192.168.1.20/admin", "192.168.1.20"),
                                              ("Gateway 2001:db8::1 is down", "2001:db8::1")])
def test_ip_addresses(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text and "[IP_1]" in out.text, out


@pytest.mark.parametrize("text", ["Update to version 1.2.3.4", "Firmware v10.0.0.1 is out"])
def test_versions_are_no_ip_addresses(text: str) -> None:
    assert S.sanitize(text).text == text
