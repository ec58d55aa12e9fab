"""Settings from the environment, with the names the deployment guide uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from ml_service.batching import ShedPolicy
from ml_service.settings import Settings


@pytest.fixture
def env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith(("ML_SERVICE_", "AIP_")) or key == "MODEL_CACHE_DIR":
            monkeypatch.delenv(key)
    return monkeypatch


def test_environment_names(env, tmp_path):
    env.setenv("MODEL_CACHE_DIR", str(tmp_path))
    env.setenv("ML_SERVICE_SECRET", " key-one, key-two ,, ")
    env.setenv("ML_SERVICE_PRELOAD", "text-embedding, cnn")
    env.setenv("ML_SERVICE_MEMORY_BUDGET_MB", "512")
    env.setenv("ML_SERVICE_PORT", "9001")
    env.setenv("ML_SERVICE_MAX_BODY_BYTES", "4096")
    s = Settings()
    assert s.model_cache_dir == tmp_path
    assert s.api_keys == ["key-one", "key-two"]
    assert s.preload_names == ["text-embedding", "cnn"]
    assert s.memory_budget_mb == 512
    assert s.port == 9001
    assert s.max_body_bytes == 4096
    assert "key-one" not in repr(s)  # the secret stays out of logs


def test_defaults(env):
    s = Settings()
    assert s.model_cache_dir == Path("models")
    assert s.port == 8001
    assert s.secret is None
    assert s.api_keys == []
    assert s.preload_names == []
    assert s.threads >= 1


@pytest.mark.parametrize("secret", ["", "   "])
def test_a_blank_secret_means_no_auth(env, secret):
    env.setenv("ML_SERVICE_SECRET", secret)
    assert Settings().secret is None
    assert Settings().api_keys == []


def test_the_queue_delay_bound_at_its_boundaries(env, tmp_path):
    """Issue 23: a 1 s target wait and a 100 ms interval by default; 0 turns the bound off; the manifest's
    [batching] target_wait_ms (0 included) wins over the server's."""
    from ml_service.loading import shed_policy
    from ml_service.manifest import Batching

    s = Settings()
    assert (s.target_wait_ms, s.shed_interval_ms) == (1000.0, 100.0)
    assert shed_policy(s, Batching()) == ShedPolicy(1.0, 0.1) == ShedPolicy()
    for name, value in (("ML_SERVICE_TARGET_WAIT_MS", "0"), ("ML_SERVICE_SHED_INTERVAL_MS", "1")):
        env.setenv(name, value)
    s = Settings()
    assert shed_policy(s, Batching()) == ShedPolicy(0.0, 0.001)
    assert shed_policy(s, Batching(target_wait_ms=250)) == ShedPolicy(0.25, 0.001)
    env.setenv("ML_SERVICE_TARGET_WAIT_MS", "600000")
    assert shed_policy(Settings(), Batching(target_wait_ms=0)).target_wait_s == 0.0
    assert Settings().target_wait_ms == 600000


def test_preload_everything(env):
    assert Settings(preload=" * ").preload_names == ["*"]


@pytest.mark.parametrize(("name", "value"), [
    ("ML_SERVICE_PORT", "70000"),
    ("ML_SERVICE_PORT", "http"),
    ("ML_SERVICE_MEMORY_BUDGET_MB", "0"),
    ("ML_SERVICE_MAX_BODY_BYTES", "10"),
    ("ML_SERVICE_DEVICE", "tpu"),
    ("ML_SERVICE_REQUEST_TIMEOUT_S", "0"),
    ("ML_SERVICE_TARGET_WAIT_MS", "-1"),
    ("ML_SERVICE_TARGET_WAIT_MS", "600001"),
    ("ML_SERVICE_SHED_INTERVAL_MS", "0.5"),
    ("ML_SERVICE_SHED_INTERVAL_MS", "60001"),
])
def test_bad_values_are_refused(env, name, value):
    env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_vertex_mode_follows_vertex_s_contract(env, tmp_path):
    assert not Settings().vertex
    env.setenv("AIP_HTTP_PORT", "8080")
    env.setenv("AIP_STORAGE_URI", str(tmp_path))
    env.setenv("ML_SERVICE_HOST", "127.0.0.1")
    s = Settings()
    assert s.vertex and (s.host, s.port) == ("0.0.0.0", 8080)  # Vertex sends traffic to 0.0.0.0:$AIP_HTTP_PORT
    assert s.max_body_bytes == 1_572_864  # the 1.5 MB of Vertex's shared endpoints
    assert s.model_cache_dir == tmp_path  # a local AIP_STORAGE_URI is the repository
    env.setenv("ML_SERVICE_MAX_BODY_BYTES", "4096")
    env.setenv("AIP_STORAGE_URI", "gs://bucket/models")
    env.setenv("ML_SERVICE_STORAGE_CACHE_DIR", str(tmp_path / "copy"))
    s = Settings()
    assert s.max_body_bytes == 4096 and s.model_cache_dir == tmp_path / "copy"


def test_aip_mode_alone_is_vertex_mode_on_our_port(env):
    env.setenv("AIP_MODE", "PREDICTION")
    s = Settings()
    assert s.vertex and (s.host, s.port) == ("127.0.0.1", 8001)


@pytest.mark.parametrize(("value", "vertex"), [
    ("PREDICTION", True), ("prediction", True), ("1", True), ("true", True), ("TRUE", True), ("Yes", True),
    (" yes ", True), ("0", False), ("false", False), ("No", False), ("", False),
])
def test_only_a_clear_yes_in_aip_mode_is_vertex_mode(env, value, vertex):
    """Vertex mode allows a public bind without a secret: AIP_MODE=0 must not turn it on."""
    env.setenv("AIP_MODE", value)
    s = Settings()
    assert s.vertex is vertex and s.aip_mode is vertex


@pytest.mark.parametrize("value", ["2", "off-ish", "maybe", "PREDICTIONS", "null"])
def test_an_unrecognized_aip_mode_is_refused(env, value):
    env.setenv("AIP_MODE", value)
    with pytest.raises(ValidationError, match=r"AIP_MODE.*not understood.*PREDICTION"):
        Settings()


def test_a_rate_limit_of_zero_is_refused(env):
    env.setenv("ML_SERVICE_RATE_LIMIT", "0/minute")
    with pytest.raises(ValidationError, match="admits nothing"):
        Settings()


@pytest.mark.parametrize(("files", "quota"), [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_the_cpu_quota_of_a_container_is_read(tmp_path, files, quota):
    from ml_service.settings import cpu_quota

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota


def test_cores_are_capped_by_the_quota_and_rounded_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert Settings.cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(len(os.sched_getaffinity(0)) + 8) * 100000} 100000\n")
    assert Settings.cores(tmp_path) == len(os.sched_getaffinity(0))  # a quota above the cpuset changes nothing
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert Settings.cores(tmp_path) == len(os.sched_getaffinity(0))
