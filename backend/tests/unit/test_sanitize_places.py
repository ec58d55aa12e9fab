"""Where people live and what they drive: street addresses in several languages and cases, postcodes, number
plates; and the household phrases that look like them but are not (issue 18, points 4 and 5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.sanitize import Sanitizer
from tests.unit.sanitize_cases import FAMILY, catalog_titles, invented_names, roundtrips

S = Sanitizer(["Emma"])


@pytest.mark.parametrize(("text", "secret"), [
    ("Deliver to 12 baker street tomorrow", "12 baker street"),
    ("deliver to 12 BAKER STREET", "12 BAKER STREET"),
    ("Parcel for 4 privet drive, little whinging", "4 privet drive"),
    ("Flat 3, 27 Old Gloucester Rd", "27 Old Gloucester Rd"),
    ("Wohnt Am Markt 3", "Am Markt 3"),
    ("Treffen An der Alster 12a, Hamburg", "An der Alster 12a"),
    ("Unter den Linden 77", "Unter den Linden 77"),
    ("Paket zur hauptstrasse 5 bringen", "hauptstrasse 5"),
    ("Schlüssel bei Berliner Straße 12 abholen", "Berliner Straße 12"),
    ("Lindenweg 3a: Zaun streichen", "Lindenweg 3a"),
    ("Bahnhofstr. 5-7, 3. OG", "Bahnhofstr. 5-7"),
    ("Rendez-vous au 12 bis rue de Rivoli", "12 bis rue de Rivoli"),
    ("Livrer au 3 avenue des Champs-Élysées", "3 avenue des Champs-Élysées"),
    ("Clés au 8 rue victor hugo", "8 rue victor hugo"),
    ("Chez 5 place de la Concorde", "5 place de la Concorde"),
    ("Recoger en C/ Mayor 3", "C/ Mayor 3"),
    ("Piso en Avenida de la Constitución 12", "Avenida de la Constitución 12"),
    ("Consegna in Piazza Navona 2", "Piazza Navona 2"),
    ("Sleutels bij Nieuwe Kerkstraat 2", "Nieuwe Kerkstraat 2"),
    ("Apt 4, 250 W 57th St", "250 W 57th St"),
    ("Clés Rue de la Paix 12, Bruxelles", "Rue de la Paix 12"),
])
def test_addresses(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text and "[ADDRESS_1]" in out.text, out
    assert secret in out.mapping["[ADDRESS_1]"] or out.mapping["[ADDRESS_1]"] in secret, out


ENGLISH_STREETS = ["street", "St", "road", "Rd.", "avenue", "lane", "drive", "crescent", "terrace", "gardens",
                   "boulevard", "mews", "grove"]
GERMAN_SUFFIXES = ["straße", "strasse", "str.", "gasse", "allee", "weg", "damm", "ufer", "chaussee"]


@FAMILY
@given(st.integers(1, 999), st.sampled_from(["", "a", "B"]), invented_names(), st.sampled_from(ENGLISH_STREETS),
       st.sampled_from([str, str.lower, str.upper, str.title]), st.sampled_from(["Deliver to ", "", "Keys at "]),
       st.sampled_from(["", ", London", " tomorrow", ". Call first"]))
def test_any_english_address(num: int, letter: str, name: str, street: str, case: object, before: str,
                             after: str) -> None:
    address = case(f"{num}{letter} {name} {street}")  # type: ignore[operator]
    out = roundtrips(S, before + address + after)
    assert address not in out.text and "[ADDRESS_1]" in out.text, out


@FAMILY
@given(st.integers(1, 299), st.sampled_from(["", "a", " b"]), invented_names(), st.sampled_from(GERMAN_SUFFIXES),
       st.sampled_from([str, str.lower]), st.sampled_from(["Paket zur ", "", "Wohnung in der "]),
       st.sampled_from(["", ", 10115 Berlin", " abholen", "."]))
def test_any_german_address(num: int, letter: str, stem: str, suffix: str, case: object, before: str,
                            after: str) -> None:
    address = case(f"{stem}{suffix} {num}{letter}")  # type: ignore[operator]
    out = roundtrips(S, before + address + after)
    assert address not in out.text and "[ADDRESS_1]" in out.text, out
    assert "10115" not in out.text


@FAMILY
@given(st.integers(1, 199), st.sampled_from(["", " bis", " ter"]),
       st.sampled_from(["rue", "avenue", "boulevard", "impasse", "chemin", "allée", "quai", "Rue", "place"]),
       st.sampled_from(["de ", "du ", "des ", "de la ", "d'"]), invented_names(), st.sampled_from([str, str.lower]))
def test_any_french_address(num: int, bis: str, street: str, of: str, name: str, case: object) -> None:
    address = f"{num}{bis} {street} {of}{case(name)}"  # type: ignore[operator]
    out = roundtrips(S, f"Livrer au {address} demain")
    assert address not in out.text and "[ADDRESS_1]" in out.text, out


@pytest.mark.parametrize("text", [
    "Reset the 2 way switch", "Ring Grandma 2 times a week", "Buy a 3 ring binder", "Parkplatz 3",
    "Stellplatz 12 in der Tiefgarage", "Spielplatz 2 Stunden", "Am Montag 3 Kuchen backen", "Im Jahr 2024",
    "Im Keller 2 Kisten sortieren", "Book 2 squash court slots", "Plant 10 roses along the drive",
    "Send it via DHL 2 days early", "Walk 2 dogs down the lane", "Dichtungsring 3 Stück kaufen",
    "Put 2 bins out on the road", "Buy 2 tickets for the 3 o'clock show", "Set the table for 6, place 2 forks",
    "Take 3 kids to the park", "Im Garten 2 Stunden arbeiten", "Fix the 2 way radio", "Platz 3 beim Turnier",
    "Order 4 Ring doorbell batteries", "Clean the 2 car garage", "Row 3, seat 12", "Gate 5 at 10:30",
    "Water 3 plants on the terrace", "Repaint 2 walls in the hall", "Run 5 km along the river road",
])
def test_household_phrases_are_not_addresses(text: str) -> None:
    out = S.sanitize(text)
    assert out.text == text, out


def test_no_catalog_title_is_personal_data() -> None:
    for title in catalog_titles():
        for text in [title, f"{title} 2 times a week", f"{title} at 10:30 on 12/06/2025", f"{title} for €12.50",
                     f"Task: {title}", f"{title} (3 of 4)", f"3 x {title}", title.lower(), title.upper()]:
            out = S.sanitize(text)
            assert out.text == text, (text, out)


# -- postcodes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "secret"), [
    ("Post it to NW1 6XE", "NW1 6XE"), ("postcode sw1a 1aa", "sw1a 1aa"), ("EC1A1BB by Friday", "EC1A1BB"),
    ("Springfield, IL 62704-1234", "IL 62704-1234"), ("ship to 90210-1234", "90210-1234"),
    ("Austin, TX 78701", "TX 78701"), ("PLZ 10115", "10115"), ("CP 75001 Paris", "75001"),
    ("Hauptstraße 5, 10115 Berlin", "10115"), ("D-80331 München", "D-80331"), ("Toronto ON M5V 3L9", "M5V 3L9"),
    ("12 rue de Rivoli, 75001 Paris", "75001"),
])
def test_postcodes(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text, out


@pytest.mark.parametrize("text", ["Walk 10000 steps", "Fly to the 3rd floor, room B1", "Buy 12345 Schrauben",
                                  "Print 20 pages on A4", "Year 2024 in review", "Score 10000 points"])
def test_numbers_that_are_no_postcodes(text: str) -> None:
    assert S.sanitize(text).text == text


# -- number plates --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "secret"), [
    ("MOT for AB12 CDE", "AB12 CDE"), ("Tax the car (AB12CDE)", "AB12CDE"), ("TÜV für M-AB 1234", "M-AB 1234"),
    ("Parkausweis für B-MW 123E", "B-MW 123E"), ("Contrôle technique AB-123-CD", "AB-123-CD"),
    ("APK voor 12-ABC-3", "12-ABC-3"), ("Revisione AB 123 CD", "AB 123 CD"),
    ("licence plate 7ABC123", "7ABC123"), ("Kennzeichen HH AB 1234", "HH AB 1234"),
    ("plate: 1234 BCD", "1234 BCD"), ("reg number ab12 cde", "ab12 cde"),
])
def test_number_plates(text: str, secret: str) -> None:
    out = roundtrips(S, text)
    assert secret not in out.text and "[PLATE_1]" in out.text, out


@pytest.mark.parametrize("text", ["Buy a USB-C 3 pack", "Print the A4 PDF", "Convert to MP3", "Check the CO2 alarm",
                                  "Service the 2019 BMW", "Order a PS5 and 2 HDMI 2.1 cables", "Buy an LED-E 27 bulb",
                                  "Clean the plate rack", "DVB-T 2 receiver"])
def test_product_names_are_no_plates(text: str) -> None:
    assert S.sanitize(text).text == text
