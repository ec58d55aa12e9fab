"""How much a lesson costs the old categories, over seeds: one-hot targets against learning without forgetting.

The backend's e2e lesson (a dozen `plants` tasks, "descale the kettle" re-filed to cleaning) on the built
task-category (its dataset as the base, text-embedding v2 embeddings, as `models train` does), for each seed of the
held-out split and each share `alpha` of the served head's answer in a kept example's target (0 = one-hot). Prints
the change of the old categories' held-out accuracy against the served v2 (points), unseen plant tasks answered
`plants`, and what the kettle becomes. Usage: .venv/bin/python bench/learn_seeds.py [--seeds 8] [--model-dir models]
"""

from __future__ import annotations

import argparse
import ast
import csv
import re
from pathlib import Path

import numpy as np
from ml_service.modelbuild.checks import embed_with_onnx
from ml_service.tasks.base import softmax
from ml_service.training.linear import (
    balanced_weights,
    distilled_targets,
    fit_logistic,
    holdout_split,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--alphas", default="0,0.5,0.8,0.9,1")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models")
    args = ap.parse_args()
    import onnx
    from onnx import numpy_helper

    rows = list(csv.DictReader((ROOT / "ml-service/data/task_category.csv").open(encoding="utf-8")))
    lesson = (ROOT / "backend/tests/e2e/test_learn.py").read_text(encoding="utf-8")
    plants = ast.literal_eval(re.search(r"PLANT_EXAMPLES = (\[.*?\])\n", lesson, re.DOTALL).group(1))
    unseen = ast.literal_eval(re.search(r"UNSEEN_PLANTS = (\[.*?\])\n", lesson, re.DOTALL).group(1))
    texts = [r["text"] for r in rows]
    labels = [r["label"] for r in rows]
    split: list[str | None] = [r["split"] for r in rows]
    kettle = texts.index("descale the kettle")
    labels[kettle] = "cleaning"
    texts += plants
    labels += ["plants"] * len(plants)
    split += [None] * len(plants)
    enc = args.model_dir / "text-embedding" / "2"
    x_all = embed_with_onnx(enc / "model.onnx", enc / "tokenizer.json", texts + unseen)
    x, xu = x_all[:len(texts)], x_all[len(texts):]
    served_labels = (args.model_dir / "task-category" / "labels.txt").read_text(encoding="utf-8").split()
    head = onnx.load(str(args.model_dir / "task-category" / "2" / "head.onnx"))
    arrays = [numpy_helper.to_array(t) for t in head.graph.initializer]
    w0 = next(a for a in arrays if a.ndim == 2)
    w0 = w0 if w0.shape[0] == len(served_labels) else w0.T
    b0 = next(a for a in arrays if a.ndim == 1)
    labs = [*served_labels, "plants"]
    index = {lab: i for i, lab in enumerate(labs)}
    truth = np.array([index[lab] for lab in labels])
    taught = np.zeros(len(texts), dtype=bool)
    taught[kettle] = True
    taught[-len(plants):] = True
    teacher = np.concatenate([softmax(x @ w0.T + b0), np.zeros((len(x), 1))], axis=1)
    alphas = [float(a) for a in args.alphas.split(",")]
    print("seed | " + " | ".join(f"alpha {a}: points, plants, kettle" for a in alphas))
    for seed in range(args.seeds):
        test = holdout_split(labels, 0.2, seed, split)
        train = ~test
        old = np.array([lab in served_labels for lab in labels]) & test
        served = ((x[old] @ w0.T + b0).argmax(1) == truth[old]).mean()
        y = truth[train]
        cells = []
        for alpha in alphas:
            targets = distilled_targets(y, len(labs), teacher[train], ~taught[train], alpha)
            w, b = fit_logistic(x[train], y, len(labs), weights=balanced_weights(y, len(labs)), targets=targets)
            pred = (x @ w.T + b).argmax(1)
            points = 100 * ((pred[old] == truth[old]).mean() - served)
            found = sum(labs[k] == "plants" for k in (xu @ w.T + b).argmax(1))
            cells.append(f"{points:+.2f}, {found}/{len(unseen)}, {labs[pred[kettle]]}")
        print(f"{seed} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
