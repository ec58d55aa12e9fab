"""Settings from the environment, with the names the deployment guide uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ml_service.settings import Settings


@pytest.fixture
def env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("ML_SERVICE_") or key == "MODEL_CACHE_DIR":
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


def test_preload_everything(env):
    assert Settings(preload=" * ").preload_names == ["*"]


@pytest.mark.parametrize(("name", "value"), [
    ("ML_SERVICE_PORT", "70000"),
    ("ML_SERVICE_PORT", "http"),
    ("ML_SERVICE_MEMORY_BUDGET_MB", "0"),
    ("ML_SERVICE_MAX_BODY_BYTES", "10"),
    ("ML_SERVICE_DEVICE", "tpu"),
    ("ML_SERVICE_REQUEST_TIMEOUT_S", "0"),
])
def test_bad_values_are_refused(env, name, value):
    env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
