"""The sanitizer on realistic household texts: what it must redact, and what it must leave alone."""

from __future__ import annotations

import pytest

from app.services.sanitize import Sanitizer

S = Sanitizer(["Emma Smith", "Lukas", "Ana-María"])


@pytest.mark.parametrize(("text", "secret", "kind"), [
    ("Email emma.smith@example.com about the plumber", "emma.smith@example.com", "EMAIL"),
    ("Call the plumber on +44 20 7946 0958", "+44 20 7946 0958", "PHONE"),
    ("Ring 020 7946 0958 tomorrow", "020 7946 0958", "PHONE"),
    ("Ruf den Vermieter an: 030 12345678", "030 12345678", "PHONE"),
    ("Appeler le 01 23 45 67 89 avant midi", "01 23 45 67 89", "PHONE"),
    ("Llamar al 612 345 678 para el gas", "612 345 678", "PHONE"),
    ("US number (212) 555-0123 for the landlord", "(212) 555-0123", "PHONE"),
    ("Transfer rent to DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00", "IBAN"),
    ("IBAN GB82WEST12345698765432 for the deposit", "GB82WEST12345698765432", "IBAN"),
    ("Card 4111 1111 1111 1111 for the groceries", "4111 1111 1111 1111", "CARD"),
    ("Card 5500-0000-0000-0004 expires soon", "5500-0000-0000-0004", "CARD"),
    ("Deliver to 221B Baker Street, London", "221B Baker Street", "ADDRESS"),
    ("Pick up the parcel at Hauptstraße 5", "Hauptstraße 5", "ADDRESS"),
    ("Rendez-vous au 12 rue de la Paix", "12 rue de la Paix", "ADDRESS"),
    ("Recoger en Calle Mayor 3", "Calle Mayor 3", "ADDRESS"),
    ("Consegna in Via Roma 10", "Via Roma 10", "ADDRESS"),
    ("Sleutels bij Keizersgracht 123", "Keizersgracht 123", "ADDRESS"),
    ("The router is at 192.168.1.20", "192.168.1.20", "IP"),
    ("IPv6 gateway fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a", "IP"),
    ("Ask Emma to water the plants", "Emma", "PERSON"),
    ("emma smith takes the bins out", "emma smith", "PERSON"),
    ("Lukas' football kit needs washing", "Lukas", "PERSON"),
    ("Ana-María cleans the bathroom", "Ana-María", "PERSON"),
])
def test_redacted(text: str, secret: str, kind: str) -> None:
    out = S.sanitize(text)
    assert secret not in out.text, out.text
    assert f"[{kind}_1]" in out.text
    assert out.mapping[f"[{kind}_1]"] == secret
    assert S.restore(out.text, out.mapping) == text


@pytest.mark.parametrize("text", [
    "Buy 3 bottles of milk for €2.99 on 2024-05-12 at 09:45",
    "Pay the electricity bill of £84.20 by 15/06/2024",
    "Termin am 12.05.2024 um 14:30 Uhr",
    "Water the plants in room 12 twice a week",
    "Clean the living room, the kitchen and the bathroom by Friday",
    "Order IKEA Billy shelf 80x28x202 cm, article 002.638.50",
    "Take 3 boxes to the garage and 2 kg of rice to the pantry",
    "Set the oven to 180 degrees for 45 minutes",
    "Replace the 60 W bulb in the hallway",
    "Plant 10 roses along the drive",
    "Book the car service for 10 am",
    "Buy a Samsung Galaxy S24 and a Dyson V15",
    "Meeting at 10.30 on 5/6/2024, year 2025",
])
def test_not_redacted(text: str) -> None:
    out = S.sanitize(text)
    assert out.text == text and not out.redacted, out.mapping


def test_the_same_value_gets_the_same_placeholder() -> None:
    out = S.sanitize("Emma calls 030 12345678; then Lukas calls 030 12345678 and emma replies")
    assert out.text == "[PERSON_1] calls [PHONE_1]; then [PERSON_2] calls [PHONE_1] and [PERSON_1] replies"
    assert S.restore("Remind [PERSON_1] to call [PHONE_1]", out.mapping) == "Remind Emma to call 030 12345678"


def test_checksums_keep_look_alikes() -> None:
    out = S.sanitize("Order number 4111 1111 1111 1112, ref DE00 1234 5678 9012 3456 78")  # bad Luhn / IBAN
    assert "CARD" not in out.text and "IBAN" not in out.text


def test_a_household_without_members() -> None:
    out = Sanitizer([]).sanitize("Emma waters the plants")
    assert out.text == "Emma waters the plants"
