"""The trainer's parts without a model: the seeded stratified split, the scores, the decision rule, the examples
(reading, checks at their boundaries, re-labelling), the head graph written without the onnx package, and the
manifest publication that leaves serving versions alone."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest

from ml_service.errors import InvalidInput, ManifestError, PayloadTooLarge
from ml_service.publish import add_version_table, next_version
from ml_service.repository import ModelRepository
from ml_service.training import examples as ex
from ml_service.training.linear import (
    balanced_weights,
    distilled_targets,
    fit_logistic,
    holdout_split,
    predict_proba,
    scores,
)
from ml_service.training.onnxhead import head_bytes
from ml_service.training.trainer import Options, decide


def test_the_split_is_seeded_and_stratified() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 2 + ["d"]
    first = holdout_split(labels, 0.2, seed=7)
    assert (first == holdout_split(labels, 0.2, seed=7)).all()  # the same seed, the same split
    assert any((holdout_split(labels, 0.2, seed=s) != first).any() for s in range(1, 5))
    held = {lab: int(sum(t for lab2, t in zip(labels, first, strict=True) if lab2 == lab)) for lab in "abcd"}
    assert held == {"a": 2, "b": 1, "c": 1, "d": 0}  # round(0.2 n), at least one, never all; a single one trains
    assert holdout_split(["a", "a"], 0.5, 0).sum() == 1


def test_stored_roles_are_kept_and_only_the_others_are_split() -> None:
    labels = ["a"] * 6 + ["b"] * 6
    fixed = ["test", "train", "train", "test", None, None] + [None] * 6
    test = holdout_split(labels, 0.5, 0, fixed)
    assert list(test[:4]) == [True, False, False, True]
    assert test[4:6].sum() == 1 and test[6:].sum() == 3


def test_scores_and_the_decision_rule() -> None:
    s = scores(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert s["accuracy"] == 0.75 and s["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667,
                                                              "support": 2}
    assert s["macro_f1"] == round((0.6667 + 0.8) / 2, 4)
    assert scores(["a"], ["z"], over=["a"])["per_label"].keys() == {"a"}  # compared heads: the same labels
    assert scores([], [])["accuracy"] is None
    assert decide(0.9, 0.9, Options(tolerance=0)) == "published"  # not worse is enough
    assert decide(0.8958, 0.9, Options(tolerance=0)) == "not_better"
    assert decide(0.8958, 0.9, Options(tolerance=0, force=True)) == "forced"
    assert decide(0.8875, 0.9, Options(tolerance=0.0125)) == "published"
    assert decide(0.89, 0.9, Options()) == "published"  # the default margin: one point
    assert decide(0.8899, 0.9, Options()) == "not_better"
    assert decide(None, None, Options()) == "not_better"  # nothing compared: only force publishes
    assert decide(None, None, Options(force=True)) == "forced"


def test_logistic_regression_separates_and_balances_a_small_new_label() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 3
    y = np.array([0] * 60 + [1] * 60 + [2] * 6)
    x = (centers[y] + rng.normal(size=(len(y), 16))).astype(np.float32)
    w, b = fit_logistic(x, y, 3, weights=balanced_weights(y, 3))
    assert w.shape == (3, 16) and b.shape == (3,) and w.dtype == np.float32
    assert (predict_proba(x, w, b).argmax(1) == y).mean() > 0.95
    weights = balanced_weights(y, 3)
    assert weights[-1] == pytest.approx(126 / 18) and weights[0] == pytest.approx(126 / 180)


def test_examples_are_read_and_checked_at_their_boundaries(tmp_path) -> None:
    (tmp_path / "e.csv").write_text("text,label\nWater the fern,plants\n\"Mow, then rake\",garden\n")
    (tmp_path / "e.jsonl").write_text('{"text": "Water the fern", "label": "plants"}\n\n')
    assert ex.read(tmp_path / "e.csv")[1] == ex.Example("Mow, then rake", "garden")
    assert ex.read(tmp_path / "e.jsonl") == [ex.Example("Water the fern", "plants")]
    (tmp_path / "bad.csv").write_text("words,category\nx,y\n")
    with pytest.raises(InvalidInput, match="text and label"):
        ex.read(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": 1, "label": "a"}\n')
    with pytest.raises(InvalidInput, match="line 1"):
        ex.read(tmp_path / "bad.jsonl")
    ok = ex.Example("t", "a" * 64)
    assert ex.check([ok] * 3, most=3, max_chars=5)[0].label == "a" * 64
    for bad, error, says in [([], InvalidInput, "empty"), ([ok] * 4, PayloadTooLarge, "limit is 3"),
                             ([ex.Example(" ", "a")], InvalidInput, "examples[0].text is blank"),
                             ([ok, ex.Example("t", "\t")], InvalidInput, "examples[1].label is blank"),
                             ([ex.Example("t", "a" * 65)], InvalidInput, "limit is 64"),
                             ([ex.Example("t", "a\nb")], InvalidInput, "one line"),
                             ([ex.Example("t" * 6, "a")], PayloadTooLarge, "limit is 5")]:
        with pytest.raises(error, match=re.escape(says)):
            ex.check(bad, most=3, max_chars=5)


def test_a_given_text_relabels_the_base_case_and_whitespace_insensitively() -> None:
    base = [ex.Example("Descale the kettle", "kitchen", "train"), ex.Example("Mow the lawn", "garden", "test")]
    rows, relabelled = ex.merge(base, [ex.Example("  descale  THE kettle", "cleaning"), ex.Example("x", "plants")])
    assert relabelled == 1
    assert rows == [ex.Example("Mow the lawn", "garden", "test"), ex.Example("  descale  THE kettle", "cleaning"),
                    ex.Example("x", "plants")]  # split anew


def test_the_head_graph_is_the_builds_and_runs(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    from ml_service.modelbuild.common import linear_head_model

    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(13, 384)).astype(np.float32), rng.normal(size=13).astype(np.float32)
    data = head_bytes(w, b)
    onnx.checker.check_model(onnx.load_from_string(data))
    linear_head_model(tmp_path / "ref.onnx", w, b, 384)
    x = rng.normal(size=(5, 384)).astype(np.float32)
    ours = ort.InferenceSession(data).run(None, {"embedding": x})[0]
    ref = ort.InferenceSession(str(tmp_path / "ref.onnx")).run(None, {"embedding": x})[0]
    assert ours.shape == (5, 13) and np.array_equal(ours, ref)
    assert np.allclose(ours, x @ w.T + b, atol=1e-4)


def test_adding_a_version_table_leaves_the_served_versions_alone(repo_root, make_model, fake_manifest) -> None:
    mdir = make_model(repo_root, "m", {**fake_manifest(), "version_policy": "all"}, versions=(1, 2))
    repo = ModelRepository(repo_root)
    before = {v: mv.fingerprint for v, mv in repo.scan()["m"].versions.items()}
    assert next_version(mdir) == 3
    add_version_table(mdir, 3, {"file": "head.fake", "card": {"source": "trained"}})
    assert next_version(mdir) == 4  # a table counts even before its directory is published
    entry = repo.scan()["m"]
    assert {v: mv.fingerprint for v, mv in entry.versions.items()} == before
    assert entry.manifest is not None and entry.manifest.versions["3"].card == {"source": "trained"}
    with pytest.raises(ManifestError):
        add_version_table(mdir, 3, {"file": "head.fake"})
    with pytest.raises(ManifestError):  # checked as the server reads it, before it replaces the good one
        add_version_table(mdir, 5, {"nonsense": 1})
    assert repo.scan()["m"].manifest_error is None


def test_distilled_targets_keep_what_the_served_head_said_where_nothing_was_taught() -> None:
    """Learning without forgetting: a kept example's target is mostly the served head's answer, a taught one its
    label; the new head then moves only where it was taught."""
    y = np.array([0, 1, 2])
    teacher = np.array([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.5, 0.5, 0.0]])
    t = distilled_targets(y, 3, teacher, np.array([True, True, False]), 0.9)
    assert np.allclose(t.sum(axis=1), 1) and np.allclose(t[0], [0.64, 0.36, 0]) and np.allclose(t[2], [0, 0, 1])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int)
    soft = np.eye(2)[labels] * 0.8 + 0.1
    w, b = fit_logistic(x, labels, 2, targets=soft)
    hard_w, _ = fit_logistic(x, labels, 2)
    assert (predict_proba(x, w, b).argmax(1) == labels).mean() > 0.95  # soft targets still learn the boundary
    assert np.abs(w).max() < np.abs(hard_w).max()  # and are less sure of it
