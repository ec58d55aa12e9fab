"""Integration-tier fixtures: the ONNX model repository (built once per session) and the app in process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ml_service.app import create_app

from .helpers import MAX_BODY_BYTES, OnnxRepo, build_onnx_repo, wait_ready


@pytest.fixture(scope="session")
def onnx_repo(tmp_path_factory, make_model, write_tokenizer, fake_manifest) -> OnnxRepo:
    return build_onnx_repo(tmp_path_factory.mktemp("onnx-repo") / "models", make_model, write_tokenizer,
                           fake_manifest)


@pytest.fixture(scope="session")
def app_client(settings_for) -> Callable[..., Any]:
    """`app_client(model_root, **settings) -> context manager` yielding a started TestClient."""
    @contextlib.contextmanager
    def _client(root: Path, **overrides: Any) -> Iterator[TestClient]:
        overrides.setdefault("max_body_bytes", MAX_BODY_BYTES)
        app = create_app(settings_for(root, **overrides))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    return _client


@pytest.fixture
def client(onnx_repo, app_client) -> Iterator[TestClient]:
    """The app over the ONNX repository, started (lifespan run), no auth, 4096-byte body limit."""
    with app_client(onnx_repo.root) as c:
        wait_ready(c)
        yield c
