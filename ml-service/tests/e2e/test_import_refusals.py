"""`ml-service models import`: what is refused (one line, nothing written), `--dry-run`, a WordPiece vocab.txt
instead of tokenizer.json, and a Transformers image classifier, on tiny random-weight checkpoints (2 layers,
hidden 32) made here with Transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_service.modelbuild.import_detect import ImportOptions, ImportRefused
from ml_service.modelbuild.importer import import_model
from ml_service.modelbuild.sources import minilm_dir

EXE = str(Path(sys.executable).with_name("ml-service"))
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def tiny_config(**kw: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=128, **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare 2-layer BertModel with random weights and the MiniLM tokenizer."""
    import torch
    from transformers import BertModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny") / "bert"
    BertModel(tiny_config()).save_pretrained(str(out))
    for f in TOKENIZER_FILES:
        shutil.copyfile(minilm_dir() / f, out / f)
    return out


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A repository holding one model that claims the alias `bert`."""
    root = tmp_path / "models"
    (root / "images" / "1").mkdir(parents=True)
    (root / "images" / "1" / "model.onnx").write_bytes(b"")
    (root / "images" / "labels.txt").write_text("a\nb\n")
    (root / "images" / "model.toml").write_text('task = "image-classification"\nruntime = "fake"\n'
                                                'labels = "labels.txt"\naliases = ["bert"]\n')
    return root


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def variant(tiny: Path, where: Path, drop: tuple[str, ...] = (), config: dict[str, Any] | None = None) -> Path:
    out = where / "checkpoint"
    shutil.copytree(tiny, out, ignore=shutil.ignore_patterns(*drop))
    if config is not None:
        conf = json.loads((out / "config.json").read_text()) | config
        (out / "config.json").write_text(json.dumps(conf))
    return out


def pickle_only(tiny: Path, where: Path) -> Path:
    out = variant(tiny, where, drop=("model.safetensors",))
    (out / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")  # never opened: refused by its name
    return out


def unknown(tiny: Path, where: Path) -> Path:
    return variant(tiny, where, config={"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})


def truncated(tiny: Path, where: Path) -> Path:
    out = variant(tiny, where)
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) * 2 // 3])
    return out


def wrong_id2label(tiny: Path, where: Path) -> Path:
    from transformers import BertForSequenceClassification

    out = variant(tiny, where, drop=("model.safetensors", "config.json"))
    BertForSequenceClassification(tiny_config(num_labels=3)).save_pretrained(str(out))
    conf = json.loads((out / "config.json").read_text())
    conf["id2label"] = {"0": "yes", "1": "no"}
    (out / "config.json").write_text(json.dumps(conf))
    return out


REFUSALS = {
    "pickle-only": (pickle_only, "my-model", "only pytorch_model.bin (a pickle"),
    "unknown-architecture": (unknown, "my-model", "unknown architecture GPT2LMHeadModel (model_type 'gpt2'); "
                                                  "supported: Transformers directories of bert encoders"),
    "missing-tokenizer": (lambda t, w: variant(t, w, drop=TOKENIZER_FILES), "my-model", "has no tokenizer"),
    "truncated-weights": (truncated, "my-model", "model.safetensors is truncated"),
    "id2label-mismatch": (wrong_id2label, "my-model", "id2label has 2 labels but the classifier outputs 3 classes"),
    "alias-clash": (lambda t, w: t, "bert", "'bert' is an alias of model 'images'"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_with_one_reason_and_nothing_written(case: str, tiny: Path, repo: Path, tmp_path: Path) -> None:
    make, name, reason = REFUSALS[case]
    source = make(tiny, tmp_path)
    before = files(repo)
    with pytest.raises(ImportRefused) as info:
        import_model(source, name, repo)
    assert reason in str(info.value) and "\n" not in str(info.value)
    assert files(repo) == before


def test_state_dict_refusals(tmp_path: Path, tiny: Path, repo: Path) -> None:
    from safetensors.numpy import save_file

    weights = tiny / "model.safetensors"
    labels = tmp_path / "labels.txt"
    labels.write_text("cup\ncat\n")
    effnet = tmp_path / "head.safetensors"
    save_file({"_fc.weight": np.zeros((3, 4), dtype=np.float32)}, str(effnet))
    for opts, reason in ((ImportOptions(), "give its architecture with --arch"),
                         (ImportOptions(arch="resnet50"), "unknown architecture 'resnet50'"),
                         (ImportOptions(arch="efficientnet-lite0"), "needs its labels: give --labels"),
                         (ImportOptions(arch="efficientnet-lite0", labels_file=labels),
                          "not an efficientnet-lite0 state dict")):
        with pytest.raises(ImportRefused, match=reason):
            import_model(weights, "my-images", repo, opts)
    with pytest.raises(ImportRefused, match="the labels file has 2 labels but the weights' output"):
        import_model(effnet, "my-images", repo, ImportOptions(arch="efficientnet-lite0", labels_file=labels))
    pickle = tmp_path / "weights.pth"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(ImportRefused, match=r"pickle checkpoint.*never loaded here: convert it to safetensors"):
        import_model(pickle, "my-images", repo, ImportOptions(arch="efficientnet-lite0"))


def test_the_cli_says_one_line_and_exits_non_zero(tiny: Path, repo: Path, tmp_path: Path) -> None:
    before = files(repo)
    for source, name in ((pickle_only(tiny, tmp_path / "a"), "my-model"), (tiny, "bert")):
        r = subprocess.run([EXE, "models", "import", str(source), "--name", name, "--model-dir", str(repo)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.startswith("import refused: ") and r.stderr.count("\n") == 1, r.stderr
    assert files(repo) == before


def test_dry_run_writes_a_servable_directory_and_publishes_nothing(tiny: Path, repo: Path, tmp_path: Path
                                                                   ) -> None:
    """A sentence-transformers directory with CLS pooling and Normalize, only a vocab.txt, and a pickle beside the
    safetensors: its own pooling is exported and matches sentence-transformers, tokenizer.json is made from the
    vocabulary, the pickle is never read; --dry-run leaves the repository as it was."""
    from tokenizers import Tokenizer

    from ml_service.publish import validate_models

    source = variant(tiny, tmp_path, drop=("tokenizer.json",))
    (source / "pytorch_model.bin").write_bytes(b"\x80\x04 not a checkpoint")  # beside safetensors: never loaded
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (source / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    before = files(repo)
    result = import_model(source, "tiny-embedding", repo, dry_run=tmp_path / "out")
    assert not result.published and result.model_dir == tmp_path / "out" / "tiny-embedding"
    assert files(repo) == before
    assert result.card["text"] == {"pooling": "cls", "normalize": True, "max_tokens": 128}
    assert result.card["parity"]["fp32_min_cosine"] >= 0.9999
    assert (result.model_dir / "model.toml").is_file() and (result.model_dir / "1" / "card.json").is_file()
    assert not validate_models(result.model_dir)["tiny-embedding"].problems
    text = "Descale the kettle, then feed the cat!"
    made = Tokenizer.from_file(str(result.model_dir / "1" / "tokenizer.json")).encode(text).ids
    assert made == Tokenizer.from_file(str(minilm_dir() / "tokenizer.json")).encode(text).ids[:len(made)]
    with pytest.raises(ImportRefused, match="exists; give --dry-run an empty directory"):
        import_model(source, "tiny-embedding", repo, dry_run=tmp_path / "out")


def test_transformers_image_classifier(tmp_path: Path, repo: Path) -> None:
    """A ViTForImageClassification directory: labels from id2label, preprocessing from preprocessor_config.json,
    parity against Transformers on the real photos."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from ml_service.manifest import load_manifest

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=3, id2label={0: "cup", 1: "cat", 2: "car"},
                       label2id={"cup": 0, "cat": 1, "car": 2})
    source = tmp_path / "vit"
    ViTForImageClassification(config).save_pretrained(str(source))
    (source / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 1 / 255, "size": {"height": 32, "width": 32},
        "image_processor_type": "ViTImageProcessor"}))
    result = import_model(source, "tiny-vit", repo, dry_run=tmp_path / "out")
    assert result.card["labels"] == ["cup", "cat", "car"] and result.card["architecture"] == "ViTForImageClassification"
    assert result.card["parity"]["fp32_min_cosine"] >= 0.9999 and result.card["parity"]["fp32_top1_agreement"] == 1
    pre = load_manifest(result.model_dir / "model.toml").preprocessing
    assert (pre.image_size, pre.resize, pre.interpolation) == (32, None, "bilinear")
    assert pre.mean == [127.5] * 3 and pre.std == [127.5] * 3
