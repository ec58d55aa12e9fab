"""Issue 20: what `/models` reports a model costs is what the process grows by when it loads it (within 10%),
and idle memory is the weights, not the largest batch ever run: after a burst the process goes back near where
it was before it. With load profiles, loads run side by side and report what was measured when the same files
first loaded: together they still add up to what the process grows by."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.e2e.conftest import start_server, stop_server


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _loaded_mb(models: list[dict]) -> dict[str, float]:  # type: ignore[type-arg]
    return {f"{m['name']}:{v['version']}": v["memory_mb"] for m in models for v in m["version_details"]
            if v["memory_mb"] is not None}


def test_models_report_what_loading_them_costs_and_a_burst_leaves_nothing_behind(real_models: Path,
                                                                                   tmp_path: Path) -> None:
    from ml_service.modelbuild.checks import photo_bytes

    server = start_server(real_models, tmp_path, {"ML_SERVICE_PRELOAD": "", "ML_SERVICE_REPOSITORY_POLL_S": "0",
                                                  "ML_SERVICE_LOAD_PROFILES": "false"})  # every load measured alone
    try:
        with server.client() as c:
            for name in ("intent-classifier", "item-classifier", "task-category"):  # the last loads its encoder
                before_models = _loaded_mb(c.get("/models").json()["models"])
                before = _rss_mb(server.proc.pid)
                assert c.post(f"/models/{name}/load").status_code == 200
                grew = _rss_mb(server.proc.pid) - before
                new = {k: v for k, v in _loaded_mb(c.get("/models").json()["models"]).items()
                       if k not in before_models}
                reported = sum(new.values())
                assert abs(grew - reported) <= 0.1 * reported + 4, (name, new, grew)
            idle = _rss_mb(server.proc.pid)
            photo = base64.b64encode(photo_bytes()["coffee"]).decode()
            texts = [f"remind me to water the plants on the balcony every {i} days" for i in range(256)]
            for _ in range(3):  # bursts of full batches on every model
                assert c.post("/inference", json={"model_type": "intent", "data": {"texts": texts}}).status_code == 200
                assert c.post("/inference", json={"model_type": "task", "data": {"texts": texts}}).status_code == 200
                assert c.post("/inference", json={"model_type": "cnn", "data": {"images": [photo] * 6}}
                              ).status_code == 200
            time.sleep(2.0)  # idle for longer than ML_SERVICE_RELEASE_IDLE_S (1 s)
            after = _rss_mb(server.proc.pid)
        assert after <= idle * 1.1 + 10, (idle, after)  # the bursts' working memory went back
    finally:
        stop_server(server)


def test_profiled_loads_run_side_by_side_and_add_up_to_what_the_process_grows_by(real_models: Path,
                                                                                 tmp_path: Path) -> None:
    env = {"ML_SERVICE_REPOSITORY_POLL_S": "0", "ML_SERVICE_PRELOAD": ""}
    names = ("intent-classifier", "item-classifier", "text-embedding")
    first = start_server(real_models, tmp_path, env)
    try:
        with first.client() as c:  # one at a time, as on a fresh clone: measures every served version
            assert [c.post(f"/models/{n}/load").status_code for n in names] == [200] * len(names)
            loaded = {f"{m['name']}:{v['version']}" for m in c.get("/models").json()["models"]
                      for v in m["version_details"] if v["memory_mb"] is not None}
    finally:
        stop_server(first)
    profiles = json.loads((real_models / ".load-profiles.json").read_text())
    assert loaded and loaded <= set(profiles), (loaded, set(profiles))
    server = start_server(real_models, tmp_path, env)
    try:
        with server.client() as c:
            before = _rss_mb(server.proc.pid)
            with ThreadPoolExecutor(len(names)) as pool:
                codes = list(pool.map(lambda n: c.post(f"/models/{n}/load").status_code, names))
            assert codes == [200] * len(names)
            grew = _rss_mb(server.proc.pid) - before
            models = c.get("/models").json()["models"]
            details = [v for m in models for v in m["version_details"] if v["memory_mb"] is not None]
            assert len(details) >= len(names) and all(v["memory_from_profile"] for v in details), details
            reported = sum(v["memory_mb"] for v in details)
            assert abs(grew - reported) <= 0.1 * reported + 4 * len(details), (details, grew)
            # a profiled load still ran its files: the models answer
            assert c.post("/inference", json={"model_type": "intent", "data": {"texts": ["buy milk"]}}
                          ).status_code == 200
        text = server.log.read_text()
        assert text.count("as its load profile says") == len(details)
    finally:
        stop_server(server)


def test_what_a_model_costs_does_not_depend_on_what_loaded_before_it(real_models: Path, tmp_path: Path) -> None:
    """The libraries' one-time costs (ONNX Runtime's first session, the tokenizer library: ~30 MB) are paid at
    start, so the model that happens to load first does not carry them, in this process or in a profile."""
    env = {"ML_SERVICE_PRELOAD": "", "ML_SERVICE_REPOSITORY_POLL_S": "0", "ML_SERVICE_LOAD_PROFILES": "false"}
    reported = []
    for order in (("text-embedding", "intent-classifier"), ("intent-classifier", "text-embedding")):
        server = start_server(real_models, tmp_path, env)
        try:
            with server.client() as c:
                for name in order:
                    assert c.post(f"/models/{name}/load").status_code == 200
                reported.append(_loaded_mb(c.get("/models").json()["models"]))
        finally:
            stop_server(server)
    first, second = reported
    assert first.keys() == second.keys()
    for key in first:
        assert abs(first[key] - second[key]) <= 0.1 * max(first[key], second[key]) + 4, (key, first, second)
