"""Numbers that identify a person or an account: IBANs, payment cards, national IDs, phone numbers; in the shapes
people type them and with whatever text follows (issue 18, point 1 and 4)."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from stdnum.es import dni
from stdnum.fr import nir

from app.services.sanitize import Sanitizer
from tests.unit.sanitize_cases import (
    FAMILY,
    card_suffix,
    leaked_digits,
    prefix_text,
    roundtrips,
    suffix_text,
    typed_cards,
    typed_ibans,
)

S = Sanitizer([])


@pytest.mark.parametrize(("text", "secret"), [
    ("Pay DE89 3704 0044 0532 0130 00 EUR 50", "DE89 3704 0044 0532 0130 00"),
    ("pay de89 3704 0044 0532 0130 00 eur 50", "de89 3704 0044 0532 0130 00"),
    ("IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "DE89 3704 0044 0532 0130 00"),
    ("IBAN DE89370400440532013000 BIC COBADEFFXXX", "DE89370400440532013000"),
    ("GB82 WEST 1234 5698 7654 32 by Friday", "GB82 WEST 1234 5698 7654 32"),
    ("rent to gb82-west-1234-5698-7654-32 and 3 more", "gb82-west-1234-5698-7654-32"),
    ("ref 12 DE89 3704 0044 0532 0130 00 50", "DE89 3704 0044 0532 0130 00"),
    ("ES91 2100 0418 4502 0005 1332 Miete", "ES91 2100 0418 4502 0005 1332"),
])
def test_ibans_followed_by_text(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert out.mapping.get("[IBAN_1]") == secret, out
    assert out.text == text.replace(secret, "[IBAN_1]")


@FAMILY
@given(prefix_text, typed_ibans(), suffix_text)
def test_any_iban_in_any_text(before: str, typed: str, after: str) -> None:
    text = before + typed + after
    out = roundtrips(S, text)
    assert out.mapping.get("[IBAN_1]") == typed, (text, out)
    # what follows is left as it is, unless it is personal data itself ("50 50 50 50" may be a phone number)
    assert out.text == before + "[IBAN_1]" + S.sanitize(after).text


@pytest.mark.parametrize(("text", "secret"), [
    ("card 4111 1111 1111 1111 12/27", "4111 1111 1111 1111"),
    ("Card 4111-1111-1111-1111 exp 03/29 CVV 123", "4111-1111-1111-1111"),
    ("Amex 3782 822463 10005 12/27", "3782 822463 10005"),
    ("card 4111111111111111 12 27", "4111111111111111"),
    ("ref 12 4111 1111 1111 1111", "4111 1111 1111 1111"),
])
def test_cards_followed_by_text(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert out.mapping.get("[CARD_1]") == secret, out


@FAMILY
@given(st.sampled_from(["", "card ", "Karte: ", "Pay with ", "paid 12 with "]), typed_cards(), card_suffix)
def test_any_card_in_any_text(before: str, typed: str, after: str) -> None:
    text = before + typed + after
    out = roundtrips(S, text)
    assert typed not in out.text and not leaked_digits(out.text, typed), (text, out)
    if not re.search(r"\d\s*$", before):
        assert out.mapping.get("[CARD_1]") == typed, (text, out)
        assert out.text == before + "[CARD_1]" + after


def test_checksums_still_keep_look_alikes() -> None:
    for text in ["Order 4111 1111 1111 1112 12/27", "Ref DE00 3704 0044 0532 0130 00 EUR 50",
                 "Tracking 1234 5678 9012 3456 7", "Serial 1111 1111 1111 1111"]:
        out = S.sanitize(text)
        assert "CARD" not in out.text and "IBAN" not in out.text, (text, out)


@pytest.mark.parametrize(("text", "secret"), [
    ("SSN 123-45-6789 for the tax form", "123-45-6789"),
    ("my social security number is 078 05 1121", "078 05 1121"),
    ("NI number QQ 12 34 56 C", "QQ 12 34 56 C"),
    ("National insurance: AB123456D.", "AB123456D"),
    ("Steuer-ID 36 574 261 809 an den Steuerberater", "36 574 261 809"),
    ("Steuer-ID: 36574261809", "36574261809"),
    ("NIR 2 95 10 99 126 111 93 pour la CAF", "2 95 10 99 126 111 93"),
    ("DNI 54362315K para el banco", "54362315K"),
    ("NIE X2482300W", "X2482300W"),
    ("codice fiscale RCCMNL83S18D969H", "RCCMNL83S18D969H"),
    ("AHV-Nummer 756.9217.0769.85", "756.9217.0769.85"),
    ("Rijksregisternummer 85.07.30-033.28", "85.07.30-033.28"),
    ("passport number 123456789 expires in June", "123456789"),
    ("BSN: 111222333", "111222333"),
    ("NHS number 943 476 5919", "943 476 5919"),
    ("Reisepass C01X00T47 verlängern", "C01X00T47"),
])
def test_national_ids(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text, out
    assert any(v == secret for v in out.mapping.values()), out


@FAMILY
@given(st.integers(1, 899).filter(lambda a: a != 666), st.integers(1, 99), st.integers(1, 9999),
       st.sampled_from(["-", " "]), st.sampled_from(["SSN ", "Social security: ", "for the form ", ""]))
def test_any_ssn(area: int, group: int, serial: int, sep: str, before: str) -> None:
    ssn = f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"
    assume(sep == "-" or before.startswith(("SSN", "Social")))  # a spaced 3-2-4 needs its name next to it
    out = roundtrips(S, f"{before}{ssn} by Monday")
    assert ssn not in out.text, out


@FAMILY
@given(st.integers(1, 2), st.integers(0, 99), st.integers(1, 12), st.integers(1, 95), st.integers(1, 999),
       st.integers(1, 999), st.booleans())
def test_any_french_nir(sex: int, year: int, month: int, dept: int, commune: int, order: int, spaced: bool) -> None:
    body = f"{sex}{year:02d}{month:02d}{dept:02d}{commune:03d}{order:03d}"
    number = body + nir.calc_check_digits(body)
    typed = " ".join([number[0], number[1:3], number[3:5], number[5:7], number[7:10], number[10:13], number[13:]]) \
        if spaced else number
    out = roundtrips(S, f"Sécu {typed} pour la mutuelle")
    assert typed not in out.text and not leaked_digits(out.text, number), out


@FAMILY
@given(st.integers(0, 99_999_999), st.sampled_from(["", "-"]), st.sampled_from(["DNI ", "", "mi dni es "]))
def test_any_spanish_dni(n: int, sep: str, before: str) -> None:
    digits = f"{n:08d}"
    typed = digits + sep + dni.calc_check_digit(digits)
    out = roundtrips(S, f"{before}{typed} para el banco")
    assert typed not in out.text, out


# -- phone numbers --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("phone", ["+972 52-123-4567", "+682-71-000", "+1 415 555 2671", "+49 151 2345 678",
                                   "0044 20 7946 0958", "+33 6 12 34 56 78", "+91 98765 43210", "+86 138 0013 8000",
                                   "+61 4 1234 5678"])
def test_international_numbers_possible_or_valid(phone: str) -> None:
    out = roundtrips(S, f"Call {phone} about the boiler")
    assert phone not in out.text and out.mapping.get("[PHONE_1]") == phone, out


@pytest.mark.parametrize("text", ["phone: 030 1234 567", "Handy 0171 234 56", "tel. 01 23 45 67 8",
                                  "ring me on 07700 900 12"])
def test_possible_local_numbers_next_to_a_phone_word(text: str) -> None:
    out = roundtrips(S, text)
    assert "[PHONE_1]" in out.text, out


@FAMILY
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.randoms(use_true_random=False),
       st.sampled_from(["INTERNATIONAL", "E164", "dashes"]))
def test_any_country_international_format(region: str, rnd: object, style: str) -> None:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE) \
        or phonenumbers.example_number(region)
    assume(example is not None)
    assert example is not None
    national = str(example.national_number)
    shuffled = national[:2] + "".join(str(rnd.randint(0, 9)) for _ in national[2:])  # type: ignore[attr-defined]
    number = phonenumbers.parse(f"+{example.country_code}{shuffled}")
    assume(phonenumbers.is_possible_number(number))
    typed = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL if style != "E164"
                                       else phonenumbers.PhoneNumberFormat.E164)
    if style == "dashes":
        typed = typed.replace(" ", "-", 1 + typed.count(" ") // 2).replace("+", "+", 1)
    out = roundtrips(S, f"Call {typed} tomorrow")
    assert not leaked_digits(out.text, shuffled, size=5), (typed, out)


@pytest.mark.parametrize("text", [
    "Measure 80x28x202 cm for the shelf",
    "Meeting 10:30-11:45 on 2024-05-12",
    "Walk 12500 steps, drink 2000 ml water",
    "Order 3 x 250 ml bottles, article 002.638.50",
    "Call the plumber at 14:30 on 12.05.2024",
    "Buy 1.234.567 grains of rice",
    "Pay 1 250 000 euros for the house in 2030",
    "Ring Grandma 2 times a week",
    "Order #123456789 arrives Monday",
    "Order no. 12345678 arrives Monday",
    "Invoice 2024-0001234 is due",
    "Tracking number 0034 5678 9012 3456",
    "Ref DE00 3704 0044 0532 0130 00 EUR 50",
    "Parcel 1Z 999 0044 2079 4609 58",
])
def test_quantities_dates_and_times_are_no_phone_numbers(text: str) -> None:
    out = S.sanitize(text)
    assert out.text == text, out


# -- the fast checks agree with python-stdnum's ---------------------------------------------------------------------
@FAMILY
@given(st.one_of(typed_ibans(), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=15, max_size=34)))
def test_iban_check_is_stdnums(value: str) -> None:
    from stdnum import iban

    from app.services.sanitize import numbers

    compact = iban.compact(value)
    form = numbers._iban_format(compact[:2])
    ours = form is not None and len(compact) == form[0] and numbers._iban_valid(compact, form[1])
    assert ours == iban.is_valid(compact, check_country=False), compact


@FAMILY
@given(st.text("0123456789", min_size=1, max_size=25))
def test_luhn_is_stdnums(digits: str) -> None:
    from stdnum import luhn

    from app.services.sanitize import numbers

    assert numbers._luhn(digits) == luhn.is_valid(digits)
