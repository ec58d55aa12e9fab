"""Bad input on the real backend (issue 18, #22): each case the adversarial run found, and its class, answered
with a clear 4xx and a JSON body; nothing stored or changed. (Every case, in process: tests/unit/test_database.py.)"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import backend_proc, free_port, serving

CASES = [("PATCH", "/api/tasks/1", {"title": None}), ("PATCH", "/api/tasks/1", {"done": None}),
         ("PATCH", "/api/tasks/1", {"title": " "}), ("PATCH", "/api/tasks/1", {"category": "spaceship"}),
         ("GET", "/api/tasks/18446744073709551616", None), ("PATCH", "/api/tasks/9223372036854775808", {}),
         ("DELETE", "/api/tasks/99999999999999999999999", None),
         ("POST", "/api/household/members", {"name": "   "}), ("POST", "/api/household/members", {"name": "a"}),
         ("POST", "/api/tasks", {"title": "    "}), ("POST", "/api/tasks", {"title": "Mow", "category": "ufo"})]


def test_bad_input_is_a_clear_4xx_never_a_500(tmp_path: Path) -> None:
    with serving(backend_proc(free_port(), tmp_path, ML_FALLBACK_ORDER="ml-service")) as c:
        assert c.post("/api/tasks", json={"title": "Mow the lawn", "category": "garden"}).status_code == 201
        for method, path, body in CASES:
            r = c.request(method, path, json=body)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", (method, path, body, r.text)
            assert r.json()["error"]["message"]
        assert [(t["title"], t["category"], t["done"]) for t in c.get("/api/tasks").json()] == \
            [("Mow the lawn", "garden", False)]
        assert c.get("/api/household/members").json() == []
