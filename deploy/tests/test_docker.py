"""The images, built and run for real on a Docker engine (`make test-docker`): from a base image made here with
mmdebstrap and wheels prepared on the host, every container on the host network, models mounted read-only."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import IMAGE, TOKEN, free_port
from dockerutil import REPO, REPORT, Container, build, sh

pytestmark = pytest.mark.docker
IMAGE_MODELS, IMAGE_GPU = "ml-service:0.1.0-models", "ml-service:0.1.0-gpu"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "ml_service_token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)  # the container's user (10001) reads the bind mount
    return path


def serve(docker: str, image: str, name: str, token_file: Path, models: Path | None, *extra: str,
          env: dict[str, str] | None = None) -> tuple[Container, str]:
    port = free_port()
    mounts = ["-v", f"{models}:/app/models:ro"] if models else []
    box = Container(docker, f"{name}-{port}", image, "--read-only", "--tmpfs", "/tmp", "--memory", "3g",
                    "--stop-timeout", "40", "-v", f"{token_file}:/run/secrets/ml_service_token:ro", *mounts, *extra,
                    env={"ML_SERVICE_SECRET_FILE": "/run/secrets/ml_service_token", "ML_SERVICE_PORT": str(port),
                         **(env or {})})
    return box, f"http://127.0.0.1:{port}"


def infer(url: str, body: dict[str, object], token: str | None = TOKEN, timeout: float = 60) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/inference", json=body, headers=headers, timeout=timeout)


def coffee() -> str:
    from ml_service.modelbuild.checks import photo_bytes

    return base64.b64encode(photo_bytes()["coffee"]).decode()


@pytest.fixture
def container(docker: str, images: dict[str, str], token_file: Path, real_models: Path) -> Iterator[
        tuple[Container, str]]:
    box, url = serve(docker, IMAGE, "mls", token_file, real_models,
                     env={"ML_SERVICE_PRELOAD": "text-embedding,task-category,item-classifier"})
    try:
        REPORT["start to ready, 3 models preloaded (s)"] = round(box.wait_http(f"{url}/health/ready"), 1)
        yield box, url
    finally:
        box.remove()


def test_the_image_serves_the_real_models_read_only_as_a_non_root_user(docker, container):
    box, url = container
    assert sh([docker, "exec", box.name, "id", "-u"]).strip() == "10001"
    assert infer(url, {"model_type": "task-category", "data": {"text": "x"}}, token=None).status_code == 401
    r = infer(url, {"model_type": "task-category", "data": {"text": "Mow the lawn and trim the hedge"}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["label"] == "garden"
    r = infer(url, {"model_type": "cnn", "data": {"images": [coffee()], "top_k": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["label"] == "espresso"
    # the root filesystem is read-only and the models mount too: the service wrote nowhere else
    probe = "import pathlib; pathlib.Path('/app/models/x').touch()"
    assert "Read-only file system" in box_exec_error(docker, box.name, probe)
    assert TOKEN not in box.logs()
    deadline = time.monotonic() + 60  # the image's HEALTHCHECK runs every 15 s
    while box.inspect("{{.State.Health.Status}}") != "healthy":
        assert time.monotonic() < deadline, box.inspect("{{json .State.Health}}")
        time.sleep(1)


def box_exec_error(docker: str, name: str, code: str) -> str:
    import subprocess

    done = subprocess.run([docker, "exec", name, "python3", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    return done.stderr


def test_docker_stop_drains_requests_in_flight_and_exits_0(docker, container):
    box, url = container
    texts = [f"Sort the mail and file the receipts from box {i}, then water plant {i % 13}" for i in range(256)]
    answers: list[tuple[float, int]] = []

    def big_request() -> None:
        r = infer(url, {"model_type": "text-embedding", "data": {"texts": texts}}, timeout=120)
        answers.append((time.monotonic(), r.status_code))

    threads = [threading.Thread(target=big_request) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    stop_sent = time.monotonic()
    sh([docker, "stop", box.name], timeout=120)
    for t in threads:
        t.join(timeout=120)
    assert [code for _, code in answers] == [200] * 4
    assert any(at > stop_sent for at, _ in answers), "no request was still in flight when the stop was sent"
    assert box.inspect("{{.State.ExitCode}}") == "0"
    assert "Application shutdown complete" in box.logs()


def test_an_image_with_the_models_inside_sized_by_its_cpu_quota(docker, images, token_file, real_models):
    build(docker, IMAGE_MODELS, real_models, REPO / "ml-service" / "Dockerfile.models", IMAGE=IMAGE)
    box, url = serve(docker, IMAGE_MODELS, "mlsm", token_file, None, "--cpus", "1",
                     env={"ML_SERVICE_PRELOAD": "task-category"})
    try:
        box.wait_http(f"{url}/health/ready")
        r = infer(url, {"model_type": "task", "data": {"text": "Pay the council tax"}})
        assert r.status_code == 200 and r.json()["outputs"][0]["label"] == "bills", r.text
        assert "1 compute worker(s) per model" in box.logs()  # sized by the CPU quota, not the host's cores
    finally:
        box.remove()
        sh([docker, "rmi", IMAGE_MODELS])


def test_no_secret_no_public_bind(docker, images):
    """Security by default holds in the image: 0.0.0.0 without a secret is refused, with the reason."""
    port = free_port()
    box = Container(docker, f"mlsopen-{port}", IMAGE, env={"ML_SERVICE_PORT": str(port)})
    try:
        deadline = time.monotonic() + 60
        while box.running():
            assert time.monotonic() < deadline
            time.sleep(0.25)
        assert box.inspect("{{.State.ExitCode}}") == "2"
        assert "refusing to serve on 0.0.0.0 without a secret" in " ".join(box.logs().split())
    finally:
        box.remove()


def test_the_gpu_image_builds_and_without_a_gpu_serves_on_the_cpu_saying_so(docker, base_image, token_file,
                                                                             real_models):
    sh([str(REPO / "deploy" / "docker" / "wheelhouse.sh"), "gpu"])
    build(docker, IMAGE_GPU, REPO / "ml-service", REPO / "ml-service" / "Dockerfile.gpu", BASE_IMAGE=base_image,
          WHEELHOUSE="wheelhouse-gpu")
    box, url = serve(docker, IMAGE_GPU, "mlsgpu", token_file, real_models, env={"ML_SERVICE_PRELOAD": "task-category"})
    try:
        box.wait_http(f"{url}/health/ready")
        providers = sh([docker, "exec", box.name, "python3", "-c",
                        "import onnxruntime as o; print(o.get_device(), o.get_available_providers())"])
        assert "GPU" in providers and "CUDAExecutionProvider" in providers  # the GPU build of onnxruntime
        r = infer(url, {"model_type": "task", "data": {"text": "Mow the lawn and trim the hedge"}})
        assert r.status_code == 200 and r.json()["outputs"][0]["label"] == "garden", r.text
        log = " ".join(box.logs().split())
        assert "task-category version 2: CUDAExecutionProvider could not be used" in log, log[-3000:]
        assert "running on the CPU" in log
    finally:
        box.remove()
