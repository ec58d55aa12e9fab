"""Placeholders never collide with what the user typed, and restoring puts back exactly the originals
(issue 18, point 5)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from app.services.sanitize import Sanitized, Sanitizer
from tests.unit.sanitize_cases import FAMILY, roundtrips

S = Sanitizer(["Emma Smith", "Lukas"])


def test_a_typed_placeholder_is_not_a_generated_one() -> None:
    text = "Emma wrote [PERSON_1] and [PHONE_1] in the note; call 030 12345678"
    out = roundtrips(S, text)
    assert "Emma" not in out.text and "030 12345678" not in out.text
    assert "[PERSON_1] and [PHONE_1] in the note" in out.text  # the user's text, untouched
    assert "[PERSON_1]" not in out.mapping and "[PHONE_1]" not in out.mapping
    generated = [p for p in out.mapping if p in out.text]
    assert len(generated) == 2
    # an answer that echoes both: only the generated placeholders are put back
    answer = f"{generated[0]} asked about [PERSON_1]; ring {generated[1]}"
    assert Sanitizer.restore(answer, out.mapping) == "Emma asked about [PERSON_1]; ring 030 12345678"


def test_every_lookalike_form_is_avoided() -> None:
    text = "Emma: [PERSON_1] [PERSON_1~1] [PERSON_1~2] [EMAIL_7~3]"
    out = roundtrips(S, text)
    assert all(p not in text for p in out.mapping)


def test_no_lookalike_keeps_the_plain_form() -> None:
    assert S.sanitize("Ask Emma").text == "Ask [PERSON_1]"
    assert S.sanitize("Ask Emma [1] or [PERSON] or [person_1]").text == "Ask [PERSON_1] [1] or [PERSON] or [person_1]"


def test_restore_is_one_pass() -> None:
    # a restored value that looks like a placeholder is not replaced again
    mapping = {"[PERSON_1]": "[PHONE_1]", "[PHONE_1]": "030 12345678"}
    assert Sanitizer.restore("[PERSON_1] / [PHONE_1]", mapping) == "[PHONE_1] / 030 12345678"
    assert Sanitizer.restore("[PERSON_10] [PERSON_1]", {"[PERSON_1]": "Emma"}) == "[PERSON_10] Emma"


def test_sanitized_api() -> None:
    out = S.sanitize("Lukas")
    assert isinstance(out, Sanitized) and out.redacted and out.mapping == {"[PERSON_1]": "Lukas"}
    assert not S.sanitize("Clean the oven").redacted
    assert S.spans("Call Lukas on 030 12345678") == [(5, 10, "PERSON"), (14, 26, "PHONE")]


FRAGMENTS = ["Emma Smith", "Lukas", "030 12345678", "DE89 3704 0044 0532 0130 00", "4111 1111 1111 1111",
             "emma@example.com", "12 baker street", "NW1 6XE", "[PERSON_1]", "[PHONE_2]", "[EMAIL_1~1]", "⟦IBAN_1⟧",
             "pay", "the", "bill", "EUR 50", "12/27", "born 12.03.1985", "SSN 123-45-6789", "AB12 CDE", "!", "\n",
             "https://x.com/r?token=abc123def456", "Pay the electricity bill", "Parkplatz 3", "3 ring binder",
             "Marias", "Zoë", "jürgen", "(at)", "[", "]", "_1", "~"]


@FAMILY
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.sampled_from([" ", "", ", ", "\n"]))
def test_restore_gives_back_exactly_the_text(parts: list[str], sep: str) -> None:
    text = sep.join(parts)
    s = Sanitizer(["Emma Smith", "Lukas", "Maria", "Zoë", "Jürgen"])
    out = roundtrips(s, text)
    # every generated placeholder is new to the text, and every original is a piece of it
    assert all(p not in text for p in out.mapping) and all(v in text for v in out.mapping.values())
    # the same value always gets the same placeholder
    assert len(set(out.mapping.values())) == len(out.mapping)
    for placeholder in re.findall(r"\[[A-Z_]+_\d+(?:~\d+)?\]", out.text):
        assert placeholder in out.mapping or placeholder in text
