"""docker-compose.yml for real (`make test-docker`): the stack comes up from the images built here, with a test
override that puts every service on the host network on free ports (no bridge networks on these machines) and
plays Docker Hub's redis and prometheus images with Debian's packages; every service answers, a backend call reaches
ml-service, Prometheus scrapes ml-service with the token from the Docker secret, and `down` removes it all."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import TOKEN, free_port
from dockerutil import REPO, REPORT, sh

pytestmark = pytest.mark.docker
SERVICES_IMAGE = "ml-service-services:bookworm"  # Debian's redis-server and prometheus, in place of Docker Hub's


def health(cmd: list[str]) -> dict[str, Any]:
    return {"test": ["CMD", *cmd], "interval": "2s", "timeout": "3s", "retries": 30}


def py_get(url: str) -> list[str]:
    return ["python3", "-c", f"import urllib.request as u; u.urlopen('{url}', timeout=2)"]


def override(tmp: Path, ports: dict[str, int]) -> Path:
    """The test override: host network, free ports, one ml-service replica (two would share its port here)."""
    p = ports
    ml = f"http://127.0.0.1:{p['ml']}"
    prom = tmp / "prometheus.yml"
    prom.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "2s"},
        "scrape_configs": [{"job_name": "ml-service", "metrics_path": "/metrics",
                            "authorization": {"type": "Bearer",
                                              "credentials_file": "/etc/prometheus/ml-service-token"},
                            "static_configs": [{"targets": [f"127.0.0.1:{p['ml']}"]}]}]}))
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "openai").write_text("")
    for f in ("token", "openai", "prometheus.yml"):
        (tmp / f).chmod(0o644)
    doc = {
        "version": "3.8",
        "services": {
            "ml-service": {"network_mode": "host", "healthcheck": health(py_get(f"{ml}/health/ready")),
                           "environment": {"ML_SERVICE_PORT": str(p["ml"]), "ML_SERVICE_PRELOAD": "task-category",
                                           "ML_SERVICE_REDIS_URL": f"redis://127.0.0.1:{p['redis']}/0",
                                           "ML_SERVICE_MEMORY_BUDGET_MB": "1500",
                                           "ML_SERVICE_RATE_LIMIT": "1000/minute"},
                           "deploy": {"replicas": 1}},
            "backend": {"network_mode": "host", "command": ["--host", "127.0.0.1", "--port", str(p["backend"])],
                        "healthcheck": health(py_get(f"http://127.0.0.1:{p['backend']}/health")),
                        "environment": {"ML_SERVICE_URL": ml, "ML_FALLBACK_ORDER": "ml-service"}},
            "redis": {"image": SERVICES_IMAGE, "network_mode": "host",
                      "command": ["redis-server", "--port", str(p["redis"]), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"],
                      "healthcheck": health(["redis-cli", "-p", str(p["redis"]), "ping"])},
            "prometheus": {"image": SERVICES_IMAGE, "network_mode": "host",
                           "command": ["prometheus", "--config.file=/etc/prometheus/prometheus.yml",
                                       f"--web.listen-address=127.0.0.1:{p['prometheus']}",
                                       "--storage.tsdb.path=/tmp/prometheus"],
                           "volumes": [f"{prom}:/etc/prometheus/prometheus.yml:ro"]},
        },
        "secrets": {"ml_service_token": {"file": str(tmp / "token")},
                    "openai_api_key": {"file": str(tmp / "openai")}},
    }
    path = tmp / "docker-compose.test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def stack(docker: str, images: dict[str, str], real_models: Path, tmp_path: Path) -> Iterator[tuple[
        list[str], dict[str, int]]]:
    exe = shutil.which("docker-compose") or pytest.skip("docker-compose is not installed")
    sh([str(REPO / "deploy" / "docker" / "base-image.sh"), SERVICES_IMAGE, "redis-server,prometheus,ca-certificates"],
       env={"DOCKER": docker})
    ports = {k: free_port() for k in ("ml", "backend", "redis", "prometheus")}
    env = {"MODEL_CACHE_DIR": str(real_models)}
    merged = yaml.safe_load(sh([exe, "-f", str(REPO / "docker-compose.yml"), "-f", str(override(tmp_path, ports)),
                                "config"], env=env))
    for spec in merged["services"].values():
        # docker-compose 1.x refuses published ports beside the host network (they mean nothing there), and an
        # override can add to a list but not empty it: the merged file, less the ports, is what runs
        assert spec["network_mode"] == "host"
        spec.pop("ports", None)
    resolved = tmp_path / "docker-compose.resolved.yml"
    resolved.write_text(yaml.safe_dump(merged, sort_keys=False))
    compose = [exe, "-p", f"mlstest{ports['ml']}", "-f", str(resolved)]
    start = time.monotonic()
    try:
        sh([*compose, "up", "-d", "--no-build"], timeout=600, env=env)
        yield compose, ports
    finally:
        logs = subprocess.run([*compose, "logs", "--no-color", "--tail", "40"], capture_output=True, text=True,
                              cwd=REPO, timeout=120).stdout
        down = subprocess.run([*compose, "down", "-v", "--timeout", "40"], capture_output=True, text=True, cwd=REPO,
                              timeout=300)
        REPORT["compose: up to all healthy, then down (s)"] = round(time.monotonic() - start, 1)
        print(logs[-6000:])
        assert down.returncode == 0, down.stderr


def wait(what: str, check: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last is True:
                return
        except (httpx.HTTPError, OSError) as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{what}: not so after {timeout} s (last: {last!r})")


def test_the_compose_stack_comes_up_and_the_backend_reaches_ml_service(stack, docker):
    compose, p = stack
    ml, backend = f"http://127.0.0.1:{p['ml']}", f"http://127.0.0.1:{p['backend']}"

    def all_healthy() -> bool | str:
        ids = sh([*compose, "ps", "-q"]).split()
        states = [sh([docker, "inspect", "-f", "{{.Name}} {{.State.Status}} {{if .State.Health}}"
                      "{{.State.Health.Status}}{{end}}", i]).strip() for i in ids]
        return (len(ids) == 4 and all(s.split()[1] == "running" and not s.endswith(("starting", "unhealthy"))
                                     for s in states)) or " / ".join(states)

    wait("every service running and healthy", all_healthy)
    assert httpx.get(f"{ml}/health/ready").status_code == 200
    r = httpx.post(f"{backend}/api/ml/categorize", json={"text": "Mow the lawn and trim the hedge"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["category"] == "garden" and r.json()["source"] == "ml-service"
    # ml-service saw the backend's call, with the token from the shared Docker secret
    metrics = httpx.get(f"{ml}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'model="task-category"' in metrics and "ml_service_requests_total" in metrics
    assert httpx.get(f"{ml}/metrics").status_code == 401

    def scraped() -> bool | str:
        targets = httpx.get(f"http://127.0.0.1:{p['prometheus']}/api/v1/targets", timeout=5).json()
        active = targets["data"]["activeTargets"]
        return (bool(active) and all(t["health"] == "up" for t in active)) or str(active)

    wait("Prometheus scrapes ml-service with the token", scraped, timeout=60)
    q = httpx.get(f"http://127.0.0.1:{p['prometheus']}/api/v1/query",
                  params={"query": 'ml_service_model_state{model="task-category",state="ready"} == 1'}).json()
    assert q["status"] == "success" and q["data"]["result"], q
    # the rate limits live in the stack's Redis (one budget for every replica)
    keys = sh([*compose, "exec", "-T", "redis", "redis-cli", "-p", str(p["redis"]), "dbsize"]).strip()
    assert int(keys) > 0
