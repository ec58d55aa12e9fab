"""The numbers behind `models train`: a multinomial logistic regression in numpy (the service does not depend on
scikit-learn), the seeded stratified held-out split, and the classification figures of the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: the build's head (sklearn LogisticRegression(C=10)): the same objective, so the same head from the same data
C = 10.0


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = C, max_iter: int = 2000,
                 tol: float = 1e-7, weights: np.ndarray | None = None, targets: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Weights [K, D] and biases [K] minimizing the mean cross-entropy + ||W||² / (2·C·n), sklearn's
    multinomial objective (the bias is not penalized), by L-BFGS; `weights` per row as sklearn's sample_weight;
    `targets` [n, K] (rows summing to 1) in place of the one-hot rows of `y`: soft labels, for distillation."""
    n, d = x.shape
    x64 = np.asarray(x, dtype=np.float64)
    if targets is not None:
        onehot = np.array(targets, dtype=np.float64)
    else:
        onehot = np.zeros((n, n_classes))
        onehot[np.arange(n), y] = 1.0
    if weights is not None:
        onehot *= np.asarray(weights, dtype=np.float64)[:, None]
    k_d = n_classes * d

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:k_d].reshape(n_classes, d), theta[k_d:]
        z = x64 @ w.T + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -(onehot * logp).sum() / n + (w * w).sum() / (2 * c * n)
        g = (np.exp(logp) * onehot.sum(axis=1, keepdims=True) - onehot) / n
        return float(loss), np.concatenate([(g.T @ x64 + w / (c * n)).ravel(), g.sum(axis=0)])

    theta = lbfgs(objective, np.zeros(k_d + n_classes), max_iter=max_iter, tol=tol)
    return theta[:k_d].reshape(n_classes, d).astype(np.float32), theta[k_d:].astype(np.float32)


def lbfgs(f: Callable[[np.ndarray], tuple[float, np.ndarray]], theta: np.ndarray, max_iter: int = 2000,
          tol: float = 1e-7, memory: int = 10) -> np.ndarray:
    """Minimize a smooth convex `f` (returning value and gradient) until the largest gradient entry is under
    `tol`: L-BFGS's two-loop recursion with a backtracking (Armijo) line search."""
    value, grad = f(theta)
    history: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(max_iter):
        if np.abs(grad).max() < tol:
            break
        q = grad.copy()
        alphas = []
        for s, yv, rho in reversed(history):
            a = rho * (s @ q)
            alphas.append(a)
            q -= a * yv
        if history:
            s, yv, _ = history[-1]
            q *= (s @ yv) / (yv @ yv)
        else:
            q /= max(1.0, float(np.linalg.norm(grad)))
        for (s, yv, rho), a in zip(history, reversed(alphas), strict=True):
            q += s * (a - rho * (yv @ q))
        direction = -q
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction (numerical trouble): restart from the gradient
            history.clear()
            direction, slope = -grad, -float(grad @ grad)
        step = 1.0
        while True:
            new = theta + step * direction
            new_value, new_grad = f(new)
            if new_value <= value + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s, yv = new - theta, new_grad - grad
        sy = float(s @ yv)
        if sy > 1e-12:
            history.append((s, yv, 1.0 / sy))
            if len(history) > memory:
                history.pop(0)
        if step < 1e-12:
            break
        theta, value, grad = new, new_value, new_grad
    return theta


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Row weights n / (K · n_label) (sklearn's class_weight="balanced"): a new label with a dozen examples beside
    labels with sixty counts as much as they do, instead of being drowned by them."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    return np.asarray(len(y) / (present * counts[y]))


def distilled_targets(y: np.ndarray, n_classes: int, teacher: np.ndarray, keep: np.ndarray, alpha: float
                      ) -> np.ndarray:
    """One-hot rows of `y`, those where `keep` mixed with the teacher's probabilities [n, K] as (1 - alpha) ·
    one-hot + alpha · teacher (learning without forgetting: what the served head said about its own examples)."""
    t = np.zeros((len(y), n_classes))
    t[np.arange(len(y)), y] = 1.0
    t[keep] = (1 - alpha) * t[keep] + alpha * teacher[keep]
    return t


def predict_proba(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """softmax(x·Wᵀ + b), as the head graph computes it."""
    z = x @ w.T + b
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def holdout_split(labels: Sequence[str], holdout: float, seed: int,
                  fixed: Sequence[str | None] | None = None) -> np.ndarray:
    """Which rows are held out (a boolean mask). Rows with a fixed role (`"train"` / `"test"`) keep it; the others
    are split per label (stratified): round(holdout · n) of a label's n rows, at least one and never all, chosen
    by a generator seeded with `seed`; a label with fewer than 2 of them stays in training."""
    test = np.zeros(len(labels), dtype=bool)
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        role = fixed[i] if fixed is not None else None
        if role is None:
            groups.setdefault(label, []).append(i)
        else:
            test[i] = role == "test"
    rng = np.random.default_rng(seed)
    for label in sorted(groups):
        rows = groups[label]
        if len(rows) < 2:
            continue
        n_test = min(len(rows) - 1, max(1, int(np.floor(holdout * len(rows) + 0.5))))
        test[[rows[j] for j in rng.permutation(len(rows))[:n_test]]] = True
    return test


def scores(truth: Sequence[str], predicted: Sequence[str], over: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label precision/recall/F1/support over the labels in `truth` or `predicted`
    (or those `over`: two heads compared on the same texts are averaged over the same labels)."""
    if not truth:
        return {"accuracy": None, "macro_f1": None, "per_label": {}}
    per: dict[str, dict[str, float | int]] = {}
    for label in sorted(set(over) if over is not None else set(truth) | set(predicted)):
        tp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=True))
        said = sum(p == label for p in predicted)
        support = sum(t == label for t in truth)
        precision = tp / said if said else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                      "support": support}
    accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)
    macro = float(np.mean([v["f1"] for v in per.values()]))
    return {"accuracy": round(accuracy, 4), "macro_f1": round(macro, 4), "per_label": per}


__all__ = ["C", "balanced_weights", "distilled_targets", "fit_logistic", "holdout_split", "lbfgs", "predict_proba",
           "scores"]
