"""Observability on the real server: JSON request logs without content or secrets, and the dashboard driven in a
real headless Chromium (Debian's /usr/bin/chromium through Playwright; no browser is downloaded)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import start_server, stop_server

CHROMIUM = "/usr/bin/chromium"
SECRET = "dash-token-7f3a"


def test_json_logs_name_each_request_and_never_its_content(real_models: Path, tmp_path: Path) -> None:
    server = start_server(real_models, tmp_path, {"ML_SERVICE_LOG_FORMAT": "json", "ML_SERVICE_SECRET": SECRET,
                                                  "ML_SERVICE_PRELOAD": "task-category"})
    try:
        with server.client(headers={"Authorization": f"Bearer {SECRET}"}) as c:
            r = c.post("/inference", headers={"X-Request-ID": "trace-77"},
                       json={"model_type": "task", "data": {"texts": ["zanzibar flamingo invoice", "Mow the lawn"]}})
            assert r.status_code == 200 and r.headers["x-request-id"] == "trace-77"
            assert c.post("/inference", json={"model_type": "nope", "data": {}}).status_code == 404
        time.sleep(0.3)
    finally:
        stop_server(server)
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]  # every line is JSON
    requests = [x for x in lines if x["logger"] == "ml_service.requests"]
    mine = next(x for x in requests if x.get("request_id") == "trace-77")
    assert (mine["model"], mine["version"], mine["protocol"], mine["status"], mine["items"]) == (
        "task-category", 2, "native", 200, 2)
    assert mine["total_ms"] > 0 and mine["queue_ms"] is not None and mine["caller"] == "key-1"
    assert any(x["status"] == 404 and x["error"] == "model_not_found" for x in requests)
    startup = " ".join(x["msg"] for x in lines if x["logger"] in ("ml_service.core", "ml_service.rollout"))
    assert "valid model(s)" in startup and "compute worker(s)" in startup and "preloading done" in startup
    text = server.log.read_text()
    assert "zanzibar" not in text and "flamingo" not in text and SECRET not in text


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)")
def test_the_dashboard_in_chromium(real_models: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    server = start_server(real_models, tmp_path, {"ML_SERVICE_SECRET": SECRET,
                                                  "ML_SERVICE_PRELOAD": "text-embedding,task-category"})
    stop = threading.Event()

    def traffic() -> None:
        with server.client(headers={"Authorization": f"Bearer {SECRET}"}) as c:
            while not stop.is_set():
                c.post("/inference", json={"model_type": "bert", "data": {"texts": ["Buy milk", "Walk the dog"]}})
                c.post("/inference", json={"model_type": "task", "data": {"text": "Clean the oven"}})
                time.sleep(0.05)

    worker = threading.Thread(target=traffic, daemon=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{server.url}/dashboard")
            expect(page.locator("#auth")).to_be_visible(timeout=15_000)  # /stats said 401: the page asks once
            page.fill("#token", SECRET)
            page.click("#auth button")
            assert page.evaluate("sessionStorage.getItem('ml-service-token')") == SECRET
            assert SECRET not in page.url
            row = page.locator('tr[data-model="text-embedding:2"]')
            expect(row.locator(".state")).to_have_text("ready", timeout=15_000)
            worker.start()
            first = int(row.locator(".requests").inner_text())
            deadline = time.monotonic() + 30
            while int(row.locator(".requests").inner_text()) <= first + 5:  # the numbers move with the traffic
                assert time.monotonic() < deadline, "the request count never moved"
                page.wait_for_timeout(500)
            expect(page.locator("#status")).to_have_text("ready")
            assert float(row.locator(".rate").inner_text()) > 0
            assert row.locator(".p50").inner_text() != "-"
            wait = row.locator(".wait").inner_text()  # issue 23: the expected wait, once a batch has run
            assert wait.split()[0].isdigit() and "shedding" not in wait, wait
            deadline = time.monotonic() + 20
            while int(page.locator("#chart-wait").get_attribute("data-points") or 0) < 4:  # its chart fills too
                assert time.monotonic() < deadline, "the expected-wait chart has no points"
                page.wait_for_timeout(500)
            page.wait_for_function("Number(document.getElementById('chart-rate').dataset.points) >= 4",
                                   timeout=20_000)  # the charts have several points
            assert float(page.locator("#chart-latency").get_attribute("data-max") or 0) > 1
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            intent = page.locator('tr[data-model="intent-classifier:1"]')
            expect(intent.locator(".state")).to_have_text("unloaded")
            intent.locator("button.load").click()
            expect(intent.locator(".state")).to_have_text("ready", timeout=30_000)
            intent.locator("button.unload").click()
            expect(intent.locator(".state")).to_have_text("unloaded", timeout=30_000)
            browser.close()
    finally:
        stop.set()
        stop_server(server)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    keep = Path(__import__("os").environ.get("DASHBOARD_SCREENSHOT", ""))
    if keep.name:
        shutil.copy(tmp_path / "dashboard.png", keep)
