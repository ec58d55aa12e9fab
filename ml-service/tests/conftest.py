"""Fixtures shared by every test tier: model directories on disk, tokenizers, images, settings.

They are plain factories (session-scoped, so session fixtures of any tier can use them) and know
nothing about a particular tier. Tier-specific fixtures live in that tier's conftest.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from ml_service.modelbuild.common import toml_value
from ml_service.settings import Settings

#: Special tokens first, at the ids BERT-style tokenizers use for them.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
#: A small vocabulary, enough to write test sentences with.
WORDS = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "is", "was", "very", "not", "it", "i", "this", "movie",
    "good", "great", "bad", "terrible", "okay", "fine", "day", "today", "weather", "and", "of",
]


def manifest_text(manifest: dict[str, Any]) -> str:
    """A model.toml in the layout the model build writes: top-level keys, [[inputs]]/[[outputs]], [tables]."""
    top = {k: v for k, v in manifest.items()
           if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
    arrays = {k: v for k, v in manifest.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
    tables = {k: v for k, v in manifest.items() if isinstance(v, dict)}
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, rows in arrays.items():
        for row in rows:
            lines += ["", f"[[{name}]]"] + [f"{k} = {toml_value(v)}" for k, v in row.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def build_tokenizer(path: Path, words: Iterable[str] = WORDS) -> dict[str, int]:
    """Write a WordLevel tokenizer.json ([CLS] text [SEP], lowercase, whitespace split); returns the vocab."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return vocab


def build_model_dir(
    root: Path,
    name: str,
    manifest: dict[str, Any],
    *,
    versions: Iterable[int] = (1,),
    files: dict[str, bytes] | None = None,
    labels: list[str] | None = None,
) -> Path:
    """`root/name/model.toml` plus version directories holding what the manifest declares.

    Each version gets the model `file` (from `files`, else empty) and the tokenizer when one is
    declared; `labels` are written to the manifest's labels file in the model directory.
    """
    mdir = root / name
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "model.toml").write_text(manifest_text(manifest), encoding="utf-8")
    model_file = str(manifest.get("file", "model.onnx"))
    tokenizer = manifest.get("preprocessing", {}).get("tokenizer")
    for v in versions:
        vdir = mdir / str(v)
        vdir.mkdir(exist_ok=True)
        (vdir / model_file).write_bytes((files or {}).get(model_file, b""))
        for fname, content in (files or {}).items():
            if fname != model_file:
                (vdir / fname).write_bytes(content)
        if tokenizer and not (vdir / tokenizer).exists():
            build_tokenizer(vdir / tokenizer)
    if labels is not None:
        (mdir / str(manifest.get("labels", "labels.txt"))).write_text("\n".join(labels) + "\n", encoding="utf-8")
    return mdir


def fake_tensor_manifest(**fake: float | int | str) -> dict[str, Any]:
    """A `tensor` model on the fake runtime: input `x` float32 [N, 4] -> `output` [N, 1] (the row sum)."""
    return {
        "task": "tensor",
        "runtime": "fake",
        "file": "model.fake",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "output", "dtype": "float32", "shape": [-1, 1]}],
        "fake": dict(fake),
    }


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (32, 32), color: tuple[int, int, int] = (255, 0, 0),
                **save_kw: Any) -> bytes:
    """An encoded solid-color RGB image made with Pillow."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt, **save_kw)
    return buf.getvalue()


def make_settings(root: Path, **overrides: Any) -> Settings:
    """Settings for tests, independent of the environment the tests run in."""
    values: dict[str, Any] = {
        "model_cache_dir": root,
        "secret": None,
        "preload": "",
        "memory_budget_mb": 4096,
        "device": "cpu",
        "intra_op_threads": 1,
        "max_body_bytes": 8 * 1024 * 1024,
        "request_timeout_s": 30.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def toml_text() -> Callable[[dict[str, Any]], str]:
    """`toml_text(manifest_dict) -> str` in the model build's model.toml layout."""
    return manifest_text


@pytest.fixture(scope="session")
def write_tokenizer() -> Callable[..., dict[str, int]]:
    """`write_tokenizer(path, words=WORDS) -> vocab`."""
    return build_tokenizer


@pytest.fixture(scope="session")
def make_model() -> Callable[..., Path]:
    """`make_model(root, name, manifest_dict, versions=(1,), files=None, labels=None) -> model dir`."""
    return build_model_dir


@pytest.fixture(scope="session")
def fake_manifest() -> Callable[..., dict[str, Any]]:
    """`fake_manifest(**fake_knobs) -> manifest dict` for a fake-runtime tensor model."""
    return fake_tensor_manifest


@pytest.fixture(scope="session")
def make_image() -> Callable[..., bytes]:
    """`make_image(fmt="PNG", size=(w, h), color=(r, g, b)) -> encoded bytes`."""
    return image_bytes


@pytest.fixture(scope="session")
def settings_for() -> Callable[..., Settings]:
    """`settings_for(model_root, **overrides) -> Settings` (environment variables do not leak in)."""
    return make_settings


@pytest.fixture(scope="session")
def vocab() -> dict[str, int]:
    """The token ids `write_tokenizer` uses."""
    return {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *WORDS])}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real Redis (Debian's redis-server) on a free loopback port for the session; stopped at the end."""
    from ml_service_testing.redis import RedisUnavailable, redis_server

    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RedisUnavailable as e:
        if "not installed" in str(e):
            pytest.skip(f"{e} (make test installs it with apt-get where it can)")
        pytest.fail(str(e))
