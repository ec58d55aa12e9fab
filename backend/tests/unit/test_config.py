"""Settings: secrets may come as files (Docker and Kubernetes secrets), never required inline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings


def test_secrets_are_read_from_files(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_SERVICE_SECRET", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "ml").write_text("tok-one,tok-two\n")
    (tmp_path / "openai").write_text("\n  sk-test-key  \n")
    monkeypatch.setenv("ML_SERVICE_SECRET_FILE", str(tmp_path / "ml"))
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(tmp_path / "openai"))
    s = Settings(_env_file=None)
    assert s.ml_service_secret == "tok-one"
    assert s.openai_api_key == "sk-test-key"
    assert "tok-one" not in repr(s) and "sk-test-key" not in repr(s)


def test_an_inline_secret_wins_over_the_file(tmp_path, monkeypatch):
    (tmp_path / "ml").write_text("from-file")
    monkeypatch.setenv("ML_SERVICE_SECRET", "inline")
    monkeypatch.setenv("ML_SERVICE_SECRET_FILE", str(tmp_path / "ml"))
    assert Settings(_env_file=None).ml_service_secret == "inline"


def test_a_missing_secret_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ML_SERVICE_SECRET", raising=False)
    monkeypatch.setenv("ML_SERVICE_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match=r"ML_SERVICE_SECRET_FILE .* cannot be read"):
        Settings(_env_file=None)
