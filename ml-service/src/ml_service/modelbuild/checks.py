"""Accuracy checks of the built models against the packages' own PyTorch / sklearn inference.

The build prints them and records them in each model's card; the test suite asserts them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.modelbuild.common import package_dir
from ml_service.modelbuild.sources import intent_head, minilm_dir

SHORT_TEXTS = [
    "Take out the recycling on Thursday",
    "Book a dentist appointment for Emma",
    "The quick brown fox jumps over the lazy dog.",
    "Buy milk, eggs and bread",
    "How do I reset my smart thermostat?",
    "Set a timer for 20 minutes",
    "water the tomatoes",
    "Pay the electricity bill before the 15th",
]


def long_texts() -> list[str]:
    """Texts well over 128 tokens (the packaged tokenizer's baked-in limit) and some over 256."""
    base = ("Before the guests arrive on Saturday we need to clean the kitchen, vacuum the living room, "
            "change the bedding in the spare room, buy flowers, fix the wobbly table leg and walk the dog. ")
    return [base * 4, base * 5, base * 9, " ".join(SHORT_TEXTS) * 3]


def run_text_graph(onnx_path: Path, tokenizer_path: Path, texts: list[str], batch: int = 32,
                   max_tokens: int = 256) -> np.ndarray:
    """The graph's first output for texts, tokenized (truncation `max_tokens`) and padded per batch."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = []
    for i in range(0, len(texts), batch):
        encs = tok.encode_batch(texts[i:i + batch])
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for j, e in enumerate(encs):
            ids[j, :len(e.ids)] = e.ids
            mask[j, :len(e.ids)] = 1
        outs.append(sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0])
    return np.concatenate(outs)


def batch_invariance(onnx_path: Path, tokenizer_path: Path, texts: list[str], max_tokens: int = 256
                     ) -> dict[str, float]:
    """Each text alone vs inside shuffled batches of 16 mixed-length texts: min cosine, and the share of rows
    that are bit-identical (a served answer must not depend on what shares its batch)."""
    alone = run_text_graph(onnx_path, tokenizer_path, texts, batch=1, max_tokens=max_tokens)
    order = np.random.default_rng(0).permutation(len(texts))
    mixed = np.empty_like(alone)
    mixed[order] = run_text_graph(onnx_path, tokenizer_path, [texts[i] for i in order], batch=16,
                                  max_tokens=max_tokens)
    cos = (alone * mixed).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(mixed, axis=1)
    return {"min_cosine": float(cos.min()), "bit_identical": float((alone == mixed).all(axis=1).mean())}


def embed_with_onnx(onnx_path: Path, tokenizer_path: Path, texts: list[str]) -> np.ndarray:
    return run_text_graph(onnx_path, tokenizer_path, texts)


def classify_with_onnx(onnx_path: Path, tokenizer_path: Path, texts: list[str]) -> np.ndarray:
    from ml_service.tasks.base import softmax

    return softmax(run_text_graph(onnx_path, tokenizer_path, texts))


def reference_encoder() -> Any:
    """sentence-transformers loading the packaged weights (the reference implementation)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device="cpu")


def lee_corpus() -> tuple[list[str], np.ndarray]:
    """gensim's Lee corpus (50 news documents) and the human similarity matrix (upper triangle)."""
    d = package_dir("gensim") / "test" / "test_data"
    docs = [line.strip() for line in (d / "lee.cor").read_text(encoding="latin-1").splitlines() if line.strip()]
    sims = np.loadtxt(d / "similarities0-1.txt")
    if len(docs) != 50 or sims.shape != (50, 50):
        raise RuntimeError(f"unexpected Lee data: {len(docs)} docs, matrix {sims.shape}")
    return docs, sims


def lee_pearson(emb: np.ndarray, sims: np.ndarray) -> float:
    """Pearson r between embedding cosines and human scores over the 1,225 document pairs."""
    from scipy.stats import pearsonr

    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = e @ e.T
    iu = np.triu_indices(50, k=1)
    return float(pearsonr(cos[iu], sims[iu]).statistic)


def embedding_checks(model_dir: Path) -> dict[str, Any]:
    """fp32 vs sentence-transformers, int8 vs fp32, and the Lee figure for both."""
    st = reference_encoder()
    texts = SHORT_TEXTS + long_texts()
    tok = model_dir / "1" / "tokenizer.json"
    ref = st.encode(texts, convert_to_numpy=True, normalize_embeddings=True, batch_size=64)
    fp32 = embed_with_onnx(model_dir / "1" / "model.onnx", tok, texts)
    int8 = embed_with_onnx(model_dir / "2" / "model.onnx", tok, texts)
    n_short = len(SHORT_TEXTS)
    cos8 = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    docs, sims = lee_corpus()
    lee_served = embed_with_onnx(model_dir / "2" / "model.onnx", tok, docs)
    lee_fp32 = embed_with_onnx(model_dir / "1" / "model.onnx", tok, docs)
    lee_ref = st.encode(docs, convert_to_numpy=True, normalize_embeddings=True)
    long_tokens = [len(x) for x in st.tokenizer(long_texts())["input_ids"]]
    mixed = texts + docs[:40]
    inv1 = batch_invariance(model_dir / "1" / "model.onnx", tok, mixed)
    inv2 = batch_invariance(model_dir / "2" / "model.onnx", tok, mixed)
    return {
        "fp32_batch_invariance_min_cosine": inv1["min_cosine"],
        "fp32_batch_invariance_bit_identical": inv1["bit_identical"],
        "int8_batch_invariance_min_cosine": inv2["min_cosine"],
        "int8_batch_invariance_bit_identical": inv2["bit_identical"],
        "fp32_max_abs_diff": float(np.abs(fp32 - ref).max()),
        "fp32_max_abs_diff_short": float(np.abs(fp32[:n_short] - ref[:n_short]).max()),
        "fp32_max_abs_diff_long": float(np.abs(fp32[n_short:] - ref[n_short:]).max()),
        "long_text_tokens": long_tokens,
        "int8_mean_cosine": float(cos8.mean()),
        "int8_min_cosine": float(cos8.min()),
        "lee_pearson_served": lee_pearson(lee_served, sims),
        "lee_pearson_fp32": lee_pearson(lee_fp32, sims),
        "lee_pearson_reference": lee_pearson(lee_ref, sims),
    }


INTENT_TEXTS = [
    "set a timer for ten minutes", "add eggs to my shopping list", "what's on my calendar tomorrow",
    "turn off the lights in the kitchen", "i want to talk to a real person", "how do i transfer money",
    "translate hello to spanish", "what is the weather like today", "remind me to call mom",
    "this answer is useless and i am annoyed", "my card was declined at the store", "play some music",
]


def intent_checks(model_dir: Path) -> dict[str, Any]:
    """The folded ONNX head vs the package's own predict_proba on sentence-transformers embeddings."""
    _, _, labels, clf = intent_head()
    st = reference_encoder()
    emb = st.encode(INTENT_TEXTS, convert_to_numpy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = clf.predict_proba(emb)
    got = classify_with_onnx(model_dir / "1" / "model.onnx", model_dir / "1" / "tokenizer.json", INTENT_TEXTS)
    return {
        "max_abs_diff": float(np.abs(ref - got).max()),
        "same_top1": int((ref.argmax(1) == got.argmax(1)).sum()),
        "n": len(INTENT_TEXTS),
        "examples": {t: labels[int(i)] for t, i in zip(INTENT_TEXTS, got.argmax(1), strict=True)},
    }


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, per-label precision/recall/F1 and the confusion matrix."""
    k = len(labels)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t, p] += 1
    per = {}
    for i, lab in enumerate(labels):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": round(float(prec), 3), "recall": round(float(rec), 3), "f1": round(float(f1), 3),
                    "support": int(cm[i, :].sum())}
    return {
        "accuracy": float(np.trace(cm) / cm.sum()),
        "macro_f1": float(np.mean([v["f1"] for v in per.values()])),
        "per_label": per,
        "confusion_matrix": cm.tolist(),
        "labels": labels,
    }


PHOTOS = {  # scikit-image / scikit-learn sample photos and what an ImageNet model should see
    "coffee": ["espresso", "cup", "coffee mug"],
    "chelsea": ["tabby cat", "a cat having a striped coat", "Egyptian Mau"],
    "rocket": ["missile", "projectile", "space shuttle"],
    "astronaut": [],  # a person: no ImageNet class fits, only PyTorch agreement is checked
    "motorcycle": ["moped", "motor scooter", "motorcycle"],
    "china": ["palace", "pagoda", "monastery"],
    "flower": ["daisy"],
}


def photo_bytes() -> dict[str, bytes]:
    """Real photos shipped by packages, as encoded files."""
    sk = package_dir("skimage") / "data"
    sl = package_dir("sklearn") / "datasets" / "images"
    return {
        "coffee": (sk / "coffee.png").read_bytes(),
        "chelsea": (sk / "chelsea.png").read_bytes(),
        "rocket": (sk / "rocket.jpg").read_bytes(),
        "astronaut": (sk / "astronaut.png").read_bytes(),
        "motorcycle": (sk / "motorcycle_left.png").read_bytes(),
        "china": (sl / "china.jpg").read_bytes(),
        "flower": (sl / "flower.jpg").read_bytes(),
    }


def dump(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=float)
