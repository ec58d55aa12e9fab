"""`publish_version`: the atomic publish `models add` and `models import` share."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.publish import publish_version, version_numbers


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
