"""model.toml parsing and validation: good manifests load, bad ones say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.errors import ManifestError
from ml_service.manifest import Manifest, load_manifest

TEXT_INPUTS = [{"name": n, "dtype": "int64", "shape": [-1, -1]} for n in ("input_ids", "attention_mask",
                                                                           "token_type_ids")]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "model.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def load(tmp_path, toml_text):
    def _load(manifest: dict) -> Manifest:
        return load_manifest(_write(tmp_path, toml_text(manifest)))
    return _load


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path, text))
    return str(info.value)


def test_full_text_classifier_manifest_in_build_layout(load):
    m = load({
        "task": "text-classification", "runtime": "onnx", "file": "model.onnx", "aliases": ["intent", "bert"],
        "version_policy": "latest", "labels": "labels.txt",
        "inputs": TEXT_INPUTS,
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1]}],
        "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": 128},
        "postprocessing": {"output": "logits", "softmax": True},
        "batching": {"max_batch_size": 16, "max_batch_tokens": 4096, "max_queue_delay_ms": 1.5,
                     "max_queue_size": 100},
        "limits": {"max_items": 10, "max_text_chars": 1000},
        "card": {"source": "tests", "license": "MIT", "purpose": "p", "accuracy": "a", "extra_note": "kept"},
    })
    assert m.task == "text-classification"
    assert m.aliases == ["intent", "bert"]
    assert m.labels == "labels.txt"
    assert [i.name for i in m.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert m.outputs[0].shape == [-1, -1]
    assert m.preprocessing.tokenizer == "tokenizer.json"
    assert m.preprocessing.max_tokens == 128
    assert m.postprocessing.output == "logits"
    assert m.batching.max_batch_size == 16
    assert m.batching.max_batch_tokens == 4096
    assert m.batching.max_queue_delay_ms == 1.5
    assert m.limits.max_items == 10
    assert m.card.model_dump()["extra_note"] == "kept"  # the card alone accepts extra keys


def test_minimal_manifests_get_defaults(load):
    m = load({"task": "embedding", "preprocessing": {"tokenizer": "tokenizer.json"}})
    assert m.runtime == "onnx"
    assert m.file == "model.onnx"
    assert m.version_policy == "latest"
    assert m.aliases == []
    assert m.postprocessing.normalize is True
    assert m.batching.max_batch_size >= 1
    assert m.batching.target_wait_ms is None  # the server's ML_SERVICE_TARGET_WAIT_MS
    assert m.limits.max_items >= 1


def test_image_manifest(load):
    m = load({
        "task": "image-classification", "labels": "labels.txt", "aliases": ["cnn"],
        "preprocessing": {"image_size": 224, "resize": 256, "interpolation": "bilinear",
                          "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0]},
        "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [-1, 3, 224, 224]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 1000]}],
    })
    assert m.preprocessing.resize == 256
    assert m.preprocessing.interpolation == "bilinear"
    assert m.inputs[0].shape == [-1, 3, 224, 224]


@pytest.mark.parametrize("policy", ["latest", "all", [1, 3]])
def test_version_policies(load, policy):
    m = load({"task": "embedding", "version_policy": policy,
                         "preprocessing": {"tokenizer": "tokenizer.json"}})
    assert m.version_policy == policy


def test_tensor_manifest_with_fake_knobs(load, fake_manifest):
    m = load(fake_manifest(delay_ms=5, fail_load="broken weights", dim=4))
    assert m.runtime == "fake"
    assert m.fake == {"delay_ms": 5, "fail_load": "broken weights", "dim": 4}


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ManifestError, match=r"model\.toml is missing"):
        load_manifest(tmp_path / "model.toml")


def test_bad_toml(tmp_path):
    msg = _error(tmp_path, 'task = "embedding"\nthis is not toml\n')
    assert "not valid TOML" in msg


def test_not_utf8(tmp_path):
    p = tmp_path / "model.toml"
    p.write_bytes(b'task = "\xff\xfe"\n')
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(p)


@pytest.mark.parametrize(("text", "where"), [
    ('task = "tensor"\ncolour = "blue"\n', "colour"),
    ('task = "embedding"\n[preprocessing]\ntokenizer = "t.json"\ntokeniser = "x"\n', "preprocessing.tokeniser"),
    ('task = "embedding"\n[preprocessing]\ntokenizer = "t.json"\n[batching]\nmax_batch = 3\n', "batching.max_batch"),
    ('task = "embedding"\n[preprocessing]\ntokenizer = "t.json"\n[limits]\nmax_tokens = 3\n', "limits.max_tokens"),
])
def test_unknown_keys_are_rejected_by_name(tmp_path, text, where):
    msg = _error(tmp_path, text)
    assert "model.toml is invalid" in msg
    assert where in msg


@pytest.mark.parametrize("task", ["translation", "", "Embedding"])
def test_wrong_task(tmp_path, task):
    msg = _error(tmp_path, f'task = "{task}"\n')
    assert "task" in msg


def test_missing_task(tmp_path):
    assert "task" in _error(tmp_path, 'runtime = "onnx"\n')


def test_wrong_runtime(tmp_path):
    assert "runtime" in _error(tmp_path, 'task = "embedding"\nruntime = "pickle"\n[preprocessing]\ntokenizer = "t"\n')


@pytest.mark.parametrize("task", ["embedding", "text-classification"])
def test_text_task_needs_a_tokenizer(tmp_path, task):
    msg = _error(tmp_path, f'task = "{task}"\nlabels = "labels.txt"\n')
    assert "tokenizer" in msg


@pytest.mark.parametrize("task", ["text-classification", "image-classification"])
def test_classifier_needs_labels(tmp_path, task):
    msg = _error(tmp_path, f'task = "{task}"\n[preprocessing]\ntokenizer = "tokenizer.json"\n')
    assert "labels" in msg


def test_tensor_task_needs_inputs_and_outputs(tmp_path):
    msg = _error(tmp_path, 'task = "tensor"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [-1, 2]\n')
    assert "inputs and outputs" in msg


@pytest.mark.parametrize("shape", ["[-1, 0]", "[-2, 4]", "[1, -3]", '["a", 4]', "[1.5]"])
def test_bad_shape_dims(tmp_path, shape):
    text = (f'task = "tensor"\n[[inputs]]\nname = "x"\ndtype = "float32"\nshape = {shape}\n'
            '[[outputs]]\nname = "y"\ndtype = "float32"\nshape = [-1]\n')
    msg = _error(tmp_path, text)
    assert "inputs.0.shape" in msg


def test_bad_dtype(tmp_path):
    text = ('task = "tensor"\n[[inputs]]\nname = "x"\ndtype = "float128"\nshape = [-1]\n'
            '[[outputs]]\nname = "y"\ndtype = "float32"\nshape = [-1]\n')
    assert "inputs.0.dtype" in _error(tmp_path, text)


@pytest.mark.parametrize("file", ["../model.onnx", "1/../../evil.onnx", "/etc/passwd", ".."])
def test_file_must_stay_inside_the_version_directory(tmp_path, file):
    msg = _error(tmp_path, f'task = "image-classification"\nlabels = "l.txt"\nfile = "{file}"\n')
    assert "file must be a plain name" in msg


def test_a_subdirectory_file_is_allowed(load):
    m = load({"task": "image-classification", "labels": "l.txt", "file": "onnx/model.onnx"})
    assert m.file == "onnx/model.onnx"


@pytest.mark.parametrize("alias", ["has space", "-dash-first", "x" * 65, "sl/ash"])
def test_bad_alias(tmp_path, alias):
    assert "aliases" in _error(tmp_path, f'task = "image-classification"\nlabels = "l"\naliases = ["{alias}"]\n')


@pytest.mark.parametrize("policy", ['"newest"', '"1"', "[0]", "[-1]", "[1.5]", "7"])
def test_bad_version_policy(tmp_path, policy):
    msg = _error(tmp_path, f'task = "image-classification"\nlabels = "l"\nversion_policy = {policy}\n')
    assert "version_policy" in msg


@pytest.mark.parametrize(("table", "key", "value"), [
    ("batching", "max_batch_size", "0"),
    ("batching", "max_queue_delay_ms", "-1"),
    ("batching", "target_wait_ms", "-1"),
    ("batching", "target_wait_ms", "600001"),
    ("limits", "max_items", "0"),
    ("preprocessing", "max_tokens", "0"),
    ("preprocessing", "mean", "[0.5, 0.5]"),
    ("preprocessing", "interpolation", '"lanczos"'),
])
def test_out_of_range_values(tmp_path, table, key, value):
    text = f'task = "image-classification"\nlabels = "l"\n[{table}]\n{key} = {value}\n'
    assert f"{table}.{key}" in _error(tmp_path, text)


def test_all_problems_are_listed_together(tmp_path):
    msg = _error(tmp_path, 'task = "tensor"\nfoo = 1\nbar = 2\n')
    assert "foo" in msg
    assert "bar" in msg
