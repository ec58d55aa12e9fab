"""Metrics, /stats and request ids in process: the numbers move exactly with known traffic."""

from __future__ import annotations

import statistics
import sys
import time
import types

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ml_service.observe.metrics import GpuCollector
from ml_service.observe.stats import Stats, Window

from .helpers import wait_ready

ROW = {"x": [[1, 2, 3, 4]]}


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_exactly_what_was_sent(client):
    before = scrape(client)
    for _ in range(7):
        assert client.post("/inference", json={"model_type": "bert", "data": {"texts": ["a cat", "the dog", "sat"]}}
                           ).status_code == 200
    for _ in range(4):
        assert client.post("/v2/models/text-embedding/versions/1/infer", json={"inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}).status_code == 200
    assert client.post("/v1/embeddings", json={"model": "bert", "input": "x"}).status_code == 200
    for _ in range(3):
        assert client.post("/inference", json={"model_type": "nope", "data": {}}).status_code == 404
    assert client.post("/inference", content=b"x" * 5000).status_code == 413  # over the 4096-byte test limit
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    v2 = {"model": "text-embedding", "version": "2"}
    v1 = {"model": "text-embedding", "version": "1"}
    assert delta("ml_service_requests_total", protocol="native", status="200", **v2) == 7
    assert delta("ml_service_requests_total", protocol="v2", status="200", **v1) == 4
    assert delta("ml_service_requests_total", protocol="openai", status="200", **v2) == 1
    assert delta("ml_service_requests_total", protocol="native", status="404", model="", version="") == 3
    assert delta("ml_service_request_duration_seconds_count", protocol="native", **v2) == 7
    assert delta("ml_service_items_total", **v2) == 7 * 3 + 1
    assert delta("ml_service_items_total", **v1) == 4 * 2
    assert delta("ml_service_batch_size_sum", **v2) == 22  # every item sent went through exactly one batch
    assert delta("ml_service_batch_size_sum", **v1) == 8
    assert delta("ml_service_queue_wait_seconds_count", **v2) == 22
    assert delta("ml_service_batch_compute_seconds_count", **v2) == delta("ml_service_batch_size_count", **v2) > 0
    assert delta("ml_service_rejections_total", reason="payload_too_large") == 1
    assert value(after, "ml_service_model_state", state="ready", **v2) == 1
    assert value(after, "ml_service_model_state", state="unloaded", **v2) == 0
    assert value(after, "ml_service_model_memory_bytes", **v2) > 0
    assert value(after, "ml_service_queue_depth", **v2) == 0
    assert value(after, "ml_service_process_resident_memory_bytes") > 10e6
    assert value(after, "ml_service_model_load_seconds_count", **v2) == 1
    assert not any(name.startswith("ml_service_gpu") for name, _ in after)  # no GPU here: absent, not zero
    assert all(name.startswith("ml_service_") for name, _ in after)


def test_load_failures_and_rejections_by_reason(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "broken", fake_manifest(fail_load="corrupted"))
    make_model(tmp_path, "slow", fake_manifest(delay_ms=400))
    with app_client(tmp_path, secret="s3cret", request_timeout_s=0.1) as client:
        wait_ready(client)
        auth = {"Authorization": "Bearer s3cret"}
        assert client.post("/inference", headers=auth, json={"model_type": "broken", "data": {"inputs": ROW}}
                           ).status_code == 503
        assert client.post("/inference", headers=auth, json={"model_type": "slow", "data": {"inputs": ROW}}
                           ).status_code == 504
        assert client.post("/inference", json={"model_type": "slow", "data": {"inputs": ROW}}).status_code == 401
        assert client.get("/metrics").status_code == 401  # behind the token like the admin routes
        samples = scrape(type("Authed", (), {"get": lambda self, p: client.get(p, headers=auth)})())
    assert value(samples, "ml_service_model_load_failures_total", model="broken", version="1") == 1
    assert value(samples, "ml_service_rejections_total", reason="deadline") == 1
    assert value(samples, "ml_service_rejections_total", reason="unauthorized") == 2  # the request and /metrics
    assert value(samples, "ml_service_model_state", model="broken", version="1", state="failed") == 1


def test_metrics_can_be_opened_to_a_scraper(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "m", fake_manifest())
    with app_client(tmp_path, secret="s3cret", metrics_public=True) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/stats").status_code == 401


def test_stats_percentiles_agree_with_what_the_client_measured(tmp_path, make_model, fake_manifest, app_client,
                                                              vocab):
    make_model(tmp_path, "slow", fake_manifest(delay_ms=30))
    make_model(tmp_path, "bad", {"task": "embedding", "runtime": "fake", "file": "model.fake",
                                 "preprocessing": {"tokenizer": "tokenizer.json"}, "fake": {"fail_on": vocab["dog"]}})
    with app_client(tmp_path, preload="slow,bad") as client:
        wait_ready(client)
        seen = []
        for _ in range(60):
            t = time.perf_counter()
            assert client.post("/inference", json={"model_type": "slow", "data": {"inputs": ROW}}).status_code == 200
            seen.append((time.perf_counter() - t) * 1000)
        for text in ("the dog", "the cat", "a dog sat", "a mat"):  # the runtime fails on "dog": 500s
            client.post("/inference", json={"model_type": "bad", "data": {"text": text}})
        report = client.get("/stats").json()
    rows = {r["model"]: r for r in report["models"]}
    slow = rows["slow"]["last_1m"]
    assert slow["requests"] == 60 and slow["error_rate"] == 0 and rows["slow"]["last_5m"]["requests"] == 60
    for q in (50, 95):
        client_q = statistics.quantiles(seen, n=100)[q - 1]
        # the server's window sees less than the client (no client-side overhead) and rounds to a 10% bin
        assert 0.75 * client_q - 2 <= slow[f"p{q}_ms"] <= 1.1 * client_q + 2, (q, slow, client_q)
    assert rows["bad"]["last_1m"]["requests"] == 4 and rows["bad"]["last_1m"]["error_rate"] == pytest.approx(0.5)
    assert rows["slow"]["state"] == "ready" and rows["slow"]["mean_batch_size"] == 1.0


def test_stats_windows_slide():
    window = Window(300)
    for t in range(1000, 1100):  # 100 s of 2 requests a second: one fast, one slow
        window.add(t, 0.010, error=False)
        window.add(t, 0.100, error=t % 10 == 0)
    last = window.summary(1099, 60)
    assert last["requests"] == 120 and last["rate_per_s"] == 2.0 and last["error_rate"] == pytest.approx(6 / 120)
    assert last["p50_ms"] == pytest.approx(10, rel=0.06) and last["p99_ms"] == pytest.approx(100, rel=0.06)
    assert window.summary(1099, 300)["requests"] == 200
    later = window.summary(1130, 60)  # 30 s on, nothing new: only 29 s of the old traffic in the last minute
    assert later["requests"] == 2 * 29
    assert window.summary(1500, 300)["requests"] == 0
    window.add(1400, 0.5, error=False)  # the ring's slot is reused for a new second
    assert window.summary(1400, 60) == {"requests": 1, "rate_per_s": round(1 / 60, 3), "error_rate": 0.0,
                                        "p50_ms": pytest.approx(500, rel=0.06), "p95_ms": pytest.approx(500, rel=0.06),
                                        "p99_ms": pytest.approx(500, rel=0.06)}


def test_request_ids_round_trip(client):
    r = client.get("/health", headers={"X-Request-ID": "abc-123.x:y"})
    assert r.headers["x-request-id"] == "abc-123.x:y"
    mine = client.post("/inference", headers={"X-Request-ID": "job-42"}, json={"model_type": "bert",
                                                                              "data": {"text": "a"}})
    assert mine.headers["x-request-id"] == "job-42"
    ids = set()
    for bad in ("has space", "x" * 200, "", "a/b"):
        got = client.get("/health", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert got != bad and got
        ids.add(got)
    ids.add(client.get("/health").headers["x-request-id"])
    assert len(ids) == 5  # generated ones are unique
    err = client.post("/inference", json={"model_type": "nope", "data": {}}, headers={"X-Request-ID": "e-1"})
    assert err.status_code == 404 and err.headers["x-request-id"] == "e-1"


def test_the_request_log_names_the_request_never_its_content(onnx_repo, app_client, caplog):
    import logging

    with app_client(onnx_repo.root, secret="tok-zebra-secret") as client, caplog.at_level(logging.INFO):
        wait_ready(client)
        r = client.post("/inference", headers={"Authorization": "Bearer tok-zebra-secret", "X-Request-ID": "rq-9"},
                        json={"model_type": "bert", "data": {"text": "purple elephant confidential"}})
        assert r.status_code == 200
    lines = [rec for rec in caplog.records if rec.name == "ml_service.requests"]
    mine = [rec for rec in lines if getattr(rec, "request_id", None) == "rq-9"]
    assert len(mine) == 1
    rec = mine[0]
    assert (rec.model, rec.version, rec.status, rec.items, rec.caller) == ("text-embedding", 2, 200, 1, "key-1")
    assert rec.total_ms > 0 and rec.inference_ms is not None
    text = caplog.text + " ".join(str(vars(x)) for x in caplog.records)
    assert "purple elephant" not in text and "tok-zebra-secret" not in text


def test_gpu_metrics_through_nvml(monkeypatch):
    class Rates:
        gpu = 37

    class Mem:
        used, total = 3 * 2**30, 16 * 2**30

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: Rates(), nvmlDeviceGetMemoryInfo=lambda h: Mem())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    families = {f.name: f for f in GpuCollector().collect()}
    assert set(families) == {"ml_service_gpu_utilization_ratio", "ml_service_gpu_memory_used_bytes",
                             "ml_service_gpu_memory_total_bytes"}
    util = families["ml_service_gpu_utilization_ratio"].samples
    assert [(s.labels["gpu"], s.value) for s in util] == [("0", 0.37), ("1", 0.37)]
    assert families["ml_service_gpu_memory_total_bytes"].samples[1].value == 16 * 2**30

    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    assert list(GpuCollector().collect()) == []


def test_stats_lists_loaded_models_without_traffic(onnx_repo, settings_for):
    from ml_service.core import Core

    core = Core.build(settings_for(onnx_repo.root))
    report = Stats(core.repository, core.registry, core.rollout).report()
    assert report["models"] == [] and report["ready"] is False and report["rss_mb"] > 0


def test_the_grafana_dashboard_queries_only_exported_metrics(client, monkeypatch):
    """deploy/grafana/ml-service.json: every metric its queries use is one the service exports."""
    import json
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    dash = json.loads((repo / "deploy" / "grafana" / "ml-service.json").read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bml_service_[a-z_]+", e)}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    families = list(client.app.telemetry.metrics.registry.collect())  # labelled ones too, before any traffic
    exported = {f.name + sfx for f in families for sfx in suffixes.get(f.type, ("",))}
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=1),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=1, total=2))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    exported |= {s.name for f in GpuCollector().collect() for s in f.samples}
    assert used and used <= exported, sorted(used - exported)
    assert any("histogram_quantile" in e and "ml_service_request_duration_seconds_bucket" in e for e in exprs)
    prom = (repo / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in prom and "ml-service" in prom and "port: 8001" in prom
