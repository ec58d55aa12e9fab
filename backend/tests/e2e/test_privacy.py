"""e2e, privacy (issue 18, points 1, 3, 4, 5): the real backend (`uvicorn app.main:app`) with ml-service unreachable,
so every ML call falls back to the managed API: a local stand-in speaking OpenAI's wire format, reached through the
official client, that records what it receives. The household's members are created through the API; texts that
hold each class of personal data go through /api/ml/categorize and /api/ml/intent. None of the personal data may be
in what the stand-in received, and harmless household texts must arrive exactly as typed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.e2e.conftest import backend_proc, free_port
from tests.fake_openai import FakeOpenAI

MEMBERS = ["Emma Smith", "Anne-Marie Dubois", "Zoë", "Jürgen", "Maria", "Bill", "Rose"]

# (text, the personal data in it): one or more texts per class, in the variants that used to leak
CASES: list[tuple[str, list[str]]] = [
    ("Pay DE89 3704 0044 0532 0130 00 EUR 50", ["DE89 3704 0044 0532 0130 00"]),
    ("pay de89 3704 0044 0532 0130 00 eur 50 by friday", ["de89 3704 0044 0532 0130 00"]),
    ("IBAN GB82WEST12345698765432 BIC NWBKGB2L", ["GB82WEST12345698765432"]),
    ("Pay the gym with card 4111 1111 1111 1111 12/27", ["4111 1111 1111 1111"]),
    ("Ask Anne to vacuum the stairs", ["Anne"]),
    ("Marie cleans the bathroom", ["Marie"]),
    ("Zoe waters the plants", ["Zoe"]),
    ("Juergen and Jurgen are the same Jürgen", ["Juergen", "Jurgen", "Jürgen"]),
    ("Marias Fahrrad reparieren", ["Maria"]),
    ("Bill pays the electricity bill", ["Bill "]),
    ("Remind Rose to prune the roses", ["Rose "]),
    ("Deliver the parcel to 12 baker street", ["12 baker street", "baker"]),
    ("Post the keys to NW1 6XE", ["NW1 6XE"]),
    ("Schlüssel Am Markt 3 abholen", ["Am Markt 3"]),
    ("Rendez-vous au 12 bis rue de Rivoli", ["12 bis rue de Rivoli", "Rivoli"]),
    ("Send the photos to name(at)example.com", ["name(at)example.com", "example.com"]),
    ("Mail jörg@müller.de about the boiler", ["jörg@müller.de", "müller.de"]),
    ("Call +972 52-123-4567 about the sofa", ["+972 52-123-4567", "52-123-4567"]),
    ("Emma was born on 12.03.1985, book the party", ["12.03.1985"]),
    ("Send SSN 123-45-6789 to the accountant", ["123-45-6789"]),
    ("NI number QQ 12 34 56 C for the payroll", ["QQ 12 34 56 C"]),
    ("Book the MOT for AB12 CDE", ["AB12 CDE"]),
    ("TÜV für M-AB 1234 buchen", ["M-AB 1234"]),
    ("Reset the router at https://x.com/reset?token=abc123def456ghi", ["abc123def456ghi"]),
    ("Alarm code 4711, then water the plants", ["4711"]),
    ("Note [PERSON_1] says hello to Emma", ["Emma"]),
]
HARMLESS = ["Pay the electricity bill", "Reset the 2 way switch", "Ring Grandma 2 times a week", "Buy a 3 ring binder",
            "Parkplatz 3 fegen", "Mark the calendar for the bin day", "Prune the rose bushes",
            "Set a timer for 10 minutes", "Buy 3 bottles of milk for €2.99 on 2024-05-12 at 09:45",
            "Meeting 10:30-11:45, room 12"]


def _prompts(fake: FakeOpenAI) -> list[str]:
    return [m["content"] for r in fake.requests for m in r["body"]["messages"] if m["role"] == "user"]


def test_no_personal_data_reaches_the_managed_api(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    dead = free_port()  # nothing listens there: ml-service is unreachable
    backend = backend_proc(dead, tmp_path, OPENAI_API_KEY="sk-fake-key", OPENAI_BASE_URL=fake_openai.base_url,
                           ML_SERVICE_RETRIES="0", BREAKER_FAILURES="1", BREAKER_COOLDOWN_S="60").start()
    try:
        with httpx.Client(base_url=backend.ready_url.rsplit("/", 1)[0], timeout=30) as c:
            for name in MEMBERS:
                assert c.post("/api/household/members", json={"name": name}).status_code == 201
            # a one-letter name is refused by the schema, or, if stored, is no name: "a" must still leave as "a"
            assert c.post("/api/household/members", json={"name": "a"}).status_code in (201, 422)

            for text, _ in CASES:
                for path in ("/api/ml/categorize", "/api/ml/intent"):
                    r = c.post(path, json={"text": text})
                    assert r.status_code == 200 and r.json()["source"] == "openai", (path, text, r.text)
            sent = json.dumps(_prompts(fake_openai), ensure_ascii=False)
            leaked = [secret for _, secrets in CASES for secret in secrets if secret in sent]
            assert not leaked, leaked
            compact = re.sub(r"[\s-]", "", sent)
            assert "DE89370400440532013000" not in compact.upper() and "4111111111111111" not in compact
            assert "[PERSON_1] says hello to" in sent  # the user's own placeholder-like text went out as typed...
            assert any("[PERSON_1~1]" in p for p in _prompts(fake_openai))  # ...and Emma got another placeholder

            fake_openai.requests.clear()
            for text in HARMLESS:
                assert c.post("/api/ml/categorize", json={"text": text}).json()["source"] == "openai"
                assert c.post("/api/ml/intent", json={"text": text}).json()["source"] == "openai"
            prompts = _prompts(fake_openai)
            assert prompts == [p for t in HARMLESS for p in (f"Task: {t}", f"Request: {t}")]
    finally:
        backend.stop()
