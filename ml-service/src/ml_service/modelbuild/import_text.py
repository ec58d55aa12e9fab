"""`models import` of text checkpoints: the build's own export, fusions and batch-invariant int8 (text.py,
invariant.py) on the user's BERT-family directory, and parity against Transformers / sentence-transformers."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.modelbuild.checks import INTENT_TEXTS, SHORT_TEXTS, batch_invariance, long_texts, run_text_graph
from ml_service.modelbuild.import_detect import Built, ImportRefused, Plan
from ml_service.modelbuild.invariant import invariant_pooling, quantize_per_token
from ml_service.modelbuild.text import export_encoder, optimize, text_manifest, write_tokenizer

Progress = Callable[[str], None]
#: the parity bound of the fp32 version (per sample, cosine to the source framework's output)
FP32_MIN_COSINE = 0.9999


def sample_texts() -> list[str]:
    """Short, long (truncated) and conversational texts: the parity samples."""
    return SHORT_TEXTS + long_texts() + INTENT_TEXTS


def tokenizer_json(plan: Plan, work: Path) -> Path:
    """The source's tokenizer.json, or one made from its WordPiece vocab.txt."""
    assert plan.tokenizer is not None
    if plan.tokenizer.is_file():
        return plan.tokenizer
    from transformers import AutoTokenizer

    out = work / "tokenizer.json"
    tok = AutoTokenizer.from_pretrained(str(plan.tokenizer))
    tok.backend_tokenizer.save(str(out))
    return out


def build_text(plan: Plan, work: Path, stage: Path, first: int, progress: Progress) -> Built:
    """fp32 as version `first`, per-token int8 as `first + 1` when its checks pass; parity against the source."""
    assert plan.model_dir is not None
    classifier = plan.kind == "text-classifier"
    tok_src = tokenizer_json(plan, work)
    progress("exporting to ONNX (dynamic batch and sequence)")
    try:
        raw = export_encoder(work, src=plan.model_dir, pooling=plan.pooling, normalize=plan.normalize,
                             classifier=classifier)
    except Exception as exc:
        raise ImportRefused(f"the export to ONNX failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    progress("fusing the graph (attention, LayerNorm, GELU)")
    fused = work / "fused.onnx"
    fusions = optimize(raw, fused, int(plan.config.get("num_attention_heads", 12)),
                       int(plan.config.get("hidden_size", 384)))
    mean_pooled = not classifier and plan.pooling == "mean"
    fp32, int8 = work / "fp32.onnx", work / "int8.onnx"
    if mean_pooled:
        invariant_pooling(fused, fp32)
    else:
        shutil.copyfile(fused, fp32)
    progress("quantizing to int8 (per token, batch-invariant)")
    quantized = quantize_per_token(fused, int8, mean_pooling=mean_pooled)
    progress("checking parity against the source framework")
    texts = sample_texts()
    tok = work / "tokenizer-served.json"
    write_tokenizer(tok_src, tok, plan.max_tokens)
    ref = reference_outputs(plan, tok, texts)
    parity: dict[str, Any] = {"samples": len(texts), "fusions": fusions, "int8_rewrites": quantized}
    outs = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        got = run_text_graph(path, tok, texts, max_tokens=plan.max_tokens)
        outs[name] = got
        parity |= compare(name, ref, got, classifier)
        inv = batch_invariance(path, tok, texts, max_tokens=plan.max_tokens)
        parity[f"{name}_batch_invariance_min_cosine"] = inv["min_cosine"]
        parity[f"{name}_batch_invariance_bit_identical"] = inv["bit_identical"]
    if parity["fp32_min_cosine"] < FP32_MIN_COSINE or parity.get("fp32_top1_agreement", 1.0) < 1.0:
        raise ImportRefused(f"the fp32 export does not match the source: min cosine {parity['fp32_min_cosine']:.6f} "
                            f"(bound {FP32_MIN_COSINE}), same top label on "
                            f"{parity.get('fp32_top1_agreement', 1.0):.0%} of {len(texts)} samples")
    if classifier:
        parity["int8_top1_agreement_with_fp32"] = float(
            (outs["fp32"].argmax(1) == outs["int8"].argmax(1)).mean())
    int8_ok = (parity["int8_mean_cosine"] >= 0.99 and parity["int8_batch_invariance_min_cosine"] >= 0.9999
               and parity.get("int8_top1_agreement_with_fp32", 1.0) >= 0.97)
    parity["int8_published"] = int8_ok
    versions = {first: "fp32"} | ({first + 1: "int8"} if int8_ok else {})
    for number, precision in versions.items():
        d = stage / str(number)
        d.mkdir(parents=True)
        shutil.copyfile(fp32 if precision == "fp32" else int8, d / "model.onnx")
        shutil.copyfile(tok, d / "tokenizer.json")
        if classifier:
            (d / "labels.txt").write_text("\n".join(plan.labels) + "\n", encoding="utf-8")
    dim = int(ref.shape[1])
    top, tables, arrays = text_manifest(plan.task, [], {}, labels="labels.txt" if classifier else None,
                                        policy="all" if int8_ok else "latest", dim=dim,
                                        max_tokens=plan.max_tokens, normalize=plan.normalize)
    notes = [] if int8_ok else ["int8 not published: its checks failed (mean cosine >= 0.99, batch-invariant, "
                                "same top label as fp32 on >= 97%)"]
    return Built(versions, parity, (top, tables, arrays), notes, _latency_feeds(tok))


def reference_outputs(plan: Plan, tokenizer: Path, texts: list[str]) -> np.ndarray:
    """The source framework's output for texts: sentence-transformers' encode for its directories, else
    Transformers on the served tokenizer's ids (logits, or the pooled and normalized embedding)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if (plan.source / "modules.json").is_file() and plan.kind == "text-embedding":
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(str(plan.source), device="cpu", model_kwargs={"use_safetensors": True})
            emb: np.ndarray = st.encode(texts, convert_to_numpy=True, batch_size=64)
            return emb
        from tokenizers import Tokenizer
        from transformers import AutoModel, AutoModelForSequenceClassification

        loader = AutoModelForSequenceClassification if plan.kind == "text-classifier" else AutoModel
        model = loader.from_pretrained(str(plan.model_dir), use_safetensors=True).eval()
        tok = Tokenizer.from_file(str(tokenizer))
        tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0)
        tok.enable_truncation(max_length=plan.max_tokens)
        encs = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encs])
        mask = torch.tensor([e.attention_mask for e in encs])
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
        if plan.kind == "text-classifier":
            logits: np.ndarray = out.logits.numpy()
            return logits
        hidden = out.last_hidden_state.numpy()
        if plan.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask.numpy()[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        if plan.normalize:
            pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray = pooled.astype(np.float32)
        return result


def compare(name: str, ref: np.ndarray, got: np.ndarray, classifier: bool) -> dict[str, float]:
    """Per-sample cosine to the reference (and for classifiers the share of the same top label)."""
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    out = {f"{name}_mean_cosine": float(cos.mean()), f"{name}_min_cosine": float(cos.min()),
           f"{name}_max_abs_diff": float(np.abs(ref - got).max())}
    if classifier:
        out[f"{name}_top1_agreement"] = float((ref.argmax(1) == got.argmax(1)).mean())
    return out


def _latency_feeds(tokenizer: Path) -> Callable[[int], dict[str, np.ndarray]]:
    """Batches of the short sample texts (padded to the longest), for the card's latency."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))

    def feeds(n: int) -> dict[str, np.ndarray]:
        encs = tok.encode_batch([SHORT_TEXTS[i % len(SHORT_TEXTS)] for i in range(n)])
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    return feeds
