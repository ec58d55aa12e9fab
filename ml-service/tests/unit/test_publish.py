"""`publish_version`: the atomic publish `models add` and `models import` share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_service.errors import ManifestError
from ml_service.manifest import load_manifest
from ml_service.publish import (
    VERSION_FILE,
    add_version_table,
    publish_version,
    read_version_file,
    replace_model,
    version_numbers,
    write_held_back,
    write_version_file,
)
from ml_service.repository import ROLLBACK_FILE


def model_dir(where: Path) -> Path:
    """A model directory as the build or an import stages it: model.toml, labels.txt, 1/ with its own labels."""
    (where / "1").mkdir(parents=True)
    (where / "model.toml").write_text('task = "image-classification"\n')
    (where / "labels.txt").write_text("a\nb\n")
    (where / "1" / "model.onnx").write_bytes(b"onnx")
    (where / "1" / "labels.txt").write_text("x\ny\n")
    return where


def test_a_new_model_gets_its_files_and_a_version_keeps_its_own_labels(tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert publish_version(root, "m", model_dir(tmp_path / "staged")) == 1
    assert (root / "m" / "model.toml").read_text() == 'task = "image-classification"\n'
    assert (root / "m" / "labels.txt").read_text() == "a\nb\n"
    assert sorted(p.name for p in (root / "m" / "1").iterdir()) == ["labels.txt", "model.onnx"]
    assert (root / "m" / "1" / "labels.txt").read_text() == "x\ny\n"
    assert not [p for p in (root / "m").iterdir() if p.name.startswith(".incoming")]


def test_next_number_explicit_number_and_refusals(tmp_path: Path) -> None:
    root = tmp_path / "models"
    staged = model_dir(tmp_path / "staged")
    publish_version(root, "m", staged)
    (root / "m" / "model.toml").write_text("kept\n")
    assert publish_version(root, "m", staged / "1") == 2  # a version directory: the model's files stay as they are
    assert publish_version(root, "m", staged / "1", 7) == 7
    assert publish_version(root, "m", staged / "1") == 8
    assert version_numbers(root / "m") == [1, 2, 7, 8]
    assert (root / "m" / "model.toml").read_text() == "kept\n"
    with pytest.raises(FileExistsError, match="m already has a version 2"):
        publish_version(root, "m", staged / "1", 2)
    with pytest.raises(NotADirectoryError):
        publish_version(root, "m", tmp_path / "nothing")


def test_a_model_directory_without_versions_is_the_version_itself(tmp_path: Path) -> None:
    """`models add NAME DIR` where DIR holds model.toml and the files: its model-level files stay out of it."""
    src = tmp_path / "flat"
    src.mkdir()
    (src / "model.toml").write_text('task = "embedding"\n')
    (src / "labels.txt").write_text("a\n")
    (src / "model.onnx").write_bytes(b"onnx")
    publish_version(tmp_path / "models", "flat", src)
    assert sorted(p.name for p in (tmp_path / "models" / "flat" / "1").iterdir()) == ["model.onnx"]
    assert (tmp_path / "models" / "flat" / "model.toml").is_file()


def _built(where: Path, versions: dict[int, str]) -> Path:
    """A model directory as `make models` builds it: model.toml with a head version table, one file a version."""
    where.mkdir(parents=True)
    (where / "model.toml").write_text(
        'task = "text-classification"\nfile = "model.onnx"\nlabels = "labels.txt"\n'
        '[preprocessing]\ntokenizer = "tokenizer.json"\n\n'
        '[versions.2]\nfile = "head.onnx"\nencoder = "text-embedding"\nencoder_version = 2\n')
    (where / "labels.txt").write_text("a\nb\n")
    for n, text in versions.items():
        (where / str(n)).mkdir()
        (where / str(n) / ("head.onnx" if n > 1 else "model.onnx")).write_text(text)
    return where


def test_a_rebuilt_model_keeps_the_versions_published_to_it_since(tmp_path: Path) -> None:
    """`make models` rebuilding a model (its inputs changed) must not delete a household's trained versions, their
    tables, or a rollback (it did: the directory was replaced whole)."""
    root = tmp_path / "models"
    old = _built(root / "task-category", {1: "old v1", 2: "old v2"})
    add_version_table(old, 3, {"file": "head.onnx", "encoder": "text-embedding", "encoder_version": 2,
                               "card": {"source": "ml-service models train", "accuracy": "0.9"}})
    (old / "3").mkdir()
    (old / "3" / "head.onnx").write_text("trained v3")
    (old / "3" / "labels.txt").write_text("a\nb\nplants\n")
    (old / "5").mkdir()  # an added version without a table of its own
    (old / "5" / "model.onnx").write_text("added v5")
    write_held_back(old, (5,))
    new = _built(root / ".incoming-task-category", {1: "new v1", 2: "new v2"})

    assert replace_model(old, new) == [3, 5]
    model = root / "task-category"
    assert sorted(p.name for p in root.iterdir()) == ["task-category"]
    assert (model / "1" / "model.onnx").read_text() == "new v1" and (model / "2" / "head.onnx").read_text() == "new v2"
    assert (model / "3" / "head.onnx").read_text() == "trained v3"
    assert (model / "3" / "labels.txt").read_text() == "a\nb\nplants\n"
    assert (model / "5" / "model.onnx").read_text() == "added v5"
    manifest = load_manifest(model / "model.toml")  # what the server reads
    assert manifest.versions["3"].encoder == "text-embedding" and manifest.versions["3"].encoder_version == 2
    assert manifest.versions["3"].card == {"source": "ml-service models train", "accuracy": "0.9"}
    assert json.loads((model / ROLLBACK_FILE).read_text()) == {"held_back": [5]}


def test_a_first_build_and_a_rebuild_with_nothing_published_are_plain_replacements(tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert replace_model(root / "m", _built(root / ".incoming-m", {1: "first"})) == []
    assert replace_model(root / "m", _built(root / ".incoming-m", {1: "second", 2: "second v2"})) == []
    assert sorted(p.name for p in root.iterdir()) == ["m"]
    assert (root / "m" / "1" / "model.onnx").read_text() == "second"
    assert not (root / "m" / ROLLBACK_FILE).exists()


def test_a_trained_version_published_again_brings_its_own_table(tmp_path: Path) -> None:
    """A version directory with a version.toml (what `models train` writes) gets its [versions.N] table where it is
    published (`models add`); without it, a head would be read as the model's default file and fail to load."""
    root = tmp_path / "models"
    _built(root / "task-category", {1: "v1", 2: "v2"})
    trained = tmp_path / "elsewhere" / "3"
    trained.mkdir(parents=True)
    (trained / "head.onnx").write_text("trained")
    fields = {"file": "head.onnx", "encoder": "text-embedding", "encoder_version": 2,
              "card": {"source": "ml-service models train: 40 examples"}}
    write_version_file(trained, fields)
    assert read_version_file(trained) == fields
    assert publish_version(root, "task-category", trained) == 3
    manifest = load_manifest(root / "task-category" / "model.toml")
    assert manifest.versions["3"].file == "head.onnx" and manifest.versions["3"].encoder_version == 2
    assert (root / "task-category" / "3" / "head.onnx").read_text() == "trained"

    (trained / VERSION_FILE).write_text('file = "head.onnx"\nencoder_version = 0\n')  # does not fit: nothing written
    with pytest.raises(ManifestError):
        publish_version(root, "task-category", trained)
    assert version_numbers(root / "task-category") == [1, 2, 3]
    assert "versions.4" not in (root / "task-category" / "model.toml").read_text()
    (trained / VERSION_FILE).write_text("file = \n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        publish_version(root, "task-category", trained)
