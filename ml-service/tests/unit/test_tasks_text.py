"""Text tasks: tokenization, truncation, padding, pooling, softmax, labels and top-k."""

from __future__ import annotations

import numpy as np
import pytest

from ml_service.codecs import native
from ml_service.codecs.native import classification_entry, parse_top_k
from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.tasks import ItemResult, Prepared
from ml_service.tasks.base import softmax

from .conftest import native_items, native_output

LABELS = ["negative", "neutral", "positive", "mixed"]


def _embedding(max_tokens=6, **post):
    return {"task": "embedding", "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": max_tokens},
            "postprocessing": post, "limits": {"max_items": 3, "max_text_chars": 40}}


def _classifier(**post):
    return {"task": "text-classification", "labels": "labels.txt",
            "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": 16}, "postprocessing": post}


def test_tokenization_adds_cls_and_sep(make_task, vocab):
    task = make_task(_embedding())
    (p,) = task.preprocess(["The cat SAT"])
    assert p.features.tolist() == [vocab["[CLS]"], vocab["the"], vocab["cat"], vocab["sat"], vocab["[SEP]"]]
    assert p.features.dtype == np.int64
    assert p.cost == 5
    assert p.meta == {"tokens": 5, "truncated": False}
    assert [p.cost for p in task.preprocess(["the cat sat", "a"])] == [5, 3]


def test_unknown_words_map_to_unk(make_task, vocab):
    task = make_task(_embedding())
    (p,) = task.preprocess(["zebra cat"])
    assert p.features.tolist()[1:3] == [vocab["[UNK]"], vocab["cat"]]


def test_truncation_at_max_tokens_is_flagged(make_task, vocab):
    task = make_task(_embedding(max_tokens=6))
    exact, over, far_over = task.preprocess(["the cat sat on", "the cat sat on the", "the cat " * 50])
    assert exact.meta == {"tokens": 6, "truncated": False}
    assert over.meta == {"tokens": 6, "truncated": True}
    assert far_over.meta == {"tokens": 6, "truncated": True}
    assert over.features.tolist()[-1] == vocab["[SEP]"]  # truncation keeps the special tokens
    assert far_over.cost == 6


def test_collate_pads_to_the_longest_with_a_mask(make_task, vocab):
    task = make_task(_embedding())
    batch = task.preprocess(["cat", "the cat sat on"])
    feeds = task.collate(batch)
    assert set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}
    pad, cls, sep = vocab["[PAD]"], vocab["[CLS]"], vocab["[SEP]"]
    assert feeds["input_ids"].tolist() == [
        [cls, vocab["cat"], sep, pad, pad, pad],
        [cls, vocab["the"], vocab["cat"], vocab["sat"], vocab["on"], sep],
    ]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert feeds["token_type_ids"].tolist() == [[0] * 6] * 2
    assert all(a.dtype == np.int64 for a in feeds.values())


def test_pad_id_comes_from_the_tokenizer(repo_root, make_model, write_tokenizer):
    from ml_service.repository import ModelRepository
    from ml_service.tasks import create_task

    mdir = make_model(repo_root, "m", _embedding())
    # a vocabulary where [PAD] is not id 0
    write_tokenizer(mdir / "1" / "tokenizer.json", ["cat", "[PAD]"])
    entry = ModelRepository(repo_root).scan()["m"]
    mv = entry.versions[entry.candidates[-1]]
    task = create_task(entry, mv, mv.manifest)
    task.load()
    feeds = task.collate(task.preprocess(["cat", "cat cat"]))
    assert feeds["input_ids"][0, -1] == 5


def test_check_item(make_task):
    task = make_task(_embedding())
    task.check_item("x" * 40, "data.text")
    for bad in (3, None, ["a"], {"t": "a"}, b"bytes"):
        with pytest.raises(InvalidInput, match=r"data\.text must be a string"):
            task.check_item(bad, "data.text")
    with pytest.raises(PayloadTooLarge, match="41 characters"):
        task.check_item("x" * 41, "data.text")


def test_parse_seed(make_task):
    task = make_task(_embedding())
    assert native_items(task, {"text": "a"}) == (["a"], 0)
    assert native_items(task, {"texts": ["a", "b"]})[0] == ["a", "b"]
    with pytest.raises(InvalidInput, match="not both"):
        native_items(task, {"text": "a", "texts": ["b"]})
    with pytest.raises(InvalidInput, match="'text' or 'texts'"):
        native_items(task, {"image": "a"})
    with pytest.raises(InvalidInput, match=r"data\.texts: expected `array`, got `str`"):
        native_items(task, {"texts": "a"})
    with pytest.raises(InvalidInput, match="must not be empty"):
        native_items(task, {"texts": []})
    with pytest.raises(InvalidInput, match=r"data.texts\[1\]: expected `str`, got `int`"):
        native_items(task, {"texts": ["a", 1]})
    with pytest.raises(PayloadTooLarge, match="4 items"):
        native_items(task, {"texts": ["a"] * 4})
    assert len(native_items(task, {"texts": ["a"] * 3})[0]) == 3


def _feeds_and_hidden():
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=np.int64)
    hidden = np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32)
    hidden[mask == 0] = 100.0  # padding positions hold junk that must not leak into the mean
    return {"attention_mask": mask, "input_ids": np.ones_like(mask)}, hidden


def test_embedding_mean_pools_with_the_mask_and_normalizes(make_task):
    task = make_task(_embedding())
    feeds, hidden = _feeds_and_hidden()
    rows = task.postprocess({"last_hidden_state": hidden}, feeds, [Prepared(None)] * 2)
    assert [set(r) for r in rows] == [{"embedding"}, {"embedding"}]
    for i, n in enumerate((3, 2)):
        expected = hidden[i, :n].mean(axis=0)
        expected /= np.linalg.norm(expected)
        np.testing.assert_allclose(rows[i]["embedding"], expected, rtol=1e-5, atol=1e-6)
        assert np.linalg.norm(rows[i]["embedding"]) == pytest.approx(1.0, abs=1e-5)


def test_embedding_without_normalization(make_task):
    task = make_task(_embedding(normalize=False))
    feeds, hidden = _feeds_and_hidden()
    rows = task.postprocess({"last_hidden_state": hidden}, feeds, [Prepared(None)] * 2)
    np.testing.assert_allclose(rows[1]["embedding"], hidden[1, :2].mean(axis=0), rtol=1e-5)


def test_embedding_2d_outputs_are_only_normalized(make_task):
    task = make_task(_embedding())
    pooled = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    rows = task.postprocess({"sentence_embedding": pooled}, {"attention_mask": np.ones((2, 9))}, [Prepared(None)] * 2)
    np.testing.assert_allclose(rows[0]["embedding"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(rows[1]["embedding"], [0.0, 1.0], rtol=1e-6)


def test_embedding_reads_the_declared_output(make_task):
    task = make_task(_embedding(output="pooled"))
    outputs = {"last_hidden_state": np.zeros((1, 2, 2), dtype=np.float32),
               "pooled": np.array([[0.0, 5.0]], dtype=np.float32)}
    rows = task.postprocess(outputs, {"attention_mask": np.ones((1, 2))}, [Prepared(None)])
    np.testing.assert_allclose(rows[0]["embedding"], [0.0, 1.0])
    with pytest.raises(RuntimeError, match="no output 'pooled'"):
        task.postprocess({"other": outputs["pooled"]}, {}, [Prepared(None)])


def test_embedding_format_seed(make_task):
    task = make_task(_embedding())
    emb = np.array([0.6, 0.8], dtype=np.float32)
    out = native_output(task, ItemResult({"embedding": emb}, {"tokens": 7, "truncated": False}))
    assert out["tokens"] == 7
    assert "truncated" not in out
    np.testing.assert_array_equal(out["embedding"], emb)
    out = native_output(task, ItemResult({"embedding": emb}, {"tokens": 6, "truncated": True}))
    assert out["truncated"] is True


def test_softmax_is_stable_and_sums_to_one():
    p = softmax(np.array([[1000.0, 1000.0, 0.0], [1.0, 2.0, 3.0]]))
    assert p.dtype == np.float32
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=-1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-6)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(p[1], e / e.sum(), rtol=1e-6)


def test_classifier_softmax_labels_and_top_k(make_task):
    task = make_task(_classifier(), labels=LABELS)
    logits = np.array([[0.0, 1.0, 3.0, 2.0], [5.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    rows = task.postprocess({"logits": logits}, {}, [Prepared(None)] * 2)
    np.testing.assert_allclose(rows[0]["probabilities"], softmax(logits)[0], rtol=1e-6)
    result = ItemResult(rows[0], {"tokens": 4, "truncated": False})
    out = native_output(task, result, 3)
    assert out["label"] == "positive"
    assert [t["label"] for t in out["top_k"]] == ["positive", "mixed", "neutral"]
    assert out["score"] == out["top_k"][0]["score"] == pytest.approx(float(softmax(logits)[0, 2]))
    scores = [t["score"] for t in out["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert out["tokens"] == 4
    assert native_output(task, ItemResult(rows[1], {}), 1)["top_k"] == [
        {"label": "negative", "score": pytest.approx(float(softmax(logits)[1, 0]))}]


def test_classifier_without_softmax_keeps_the_scores(make_task):
    task = make_task(_classifier(softmax=False), labels=LABELS)
    probs = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float64)
    rows = task.postprocess({"logits": probs}, {}, [Prepared(None)])
    np.testing.assert_allclose(rows[0]["probabilities"], probs[0], rtol=1e-6)
    assert rows[0]["probabilities"].dtype == np.float32


def test_top_k_ties_keep_label_order():
    entry = classification_entry(np.array([0.25, 0.25, 0.25, 0.25], dtype=np.float32), LABELS, 4)
    assert [t["label"] for t in entry["top_k"]] == LABELS


def test_top_k_default_and_bounds(make_task):
    task = make_task(_classifier(), labels=LABELS)
    assert native.parse_top_k(native.InferenceData(), len(task.version.labels)) == (4)  # 5, capped at the label count
    assert parse_top_k(native.InferenceData(), 10) == (5)
    assert native_items(task, {"text": "a", "top_k": 1})[1] == (1)
    assert native_items(task, {"text": "a", "top_k": 4})[1] == (4)


@pytest.mark.parametrize("bad", [0, -1, 5, "2", 2.0, True, False, None, [1]])
def test_bad_top_k(make_task, bad):
    task = make_task(_classifier(), labels=LABELS)
    with pytest.raises(InvalidInput, match=r"data\.top_k.* from 1 to (4|the number of labels)"):
        native_items(task, {"text": "a", "top_k": bad})


def test_a_huge_text_is_cut_before_it_is_tokenized(make_task):
    """Issue 9: a 50,000-character text costs the tokenizer only what could reach the model."""
    from ml_service.tasks.text import CHARS_PER_TOKEN

    task = make_task({**_embedding(max_tokens=6), "limits": {"max_text_chars": 100_000}})
    assert task.max_chars == 6 * CHARS_PER_TOKEN
    calls: list[list[str]] = []
    real = task._tokenizer

    class Spy:
        def encode_batch(self, texts):
            calls.append(texts)
            return real.encode_batch(texts)

    task._tokenizer = Spy()
    huge = "the cat sat on the mat " * 2500  # 57,500 characters
    _, cut = task.preprocess(["the cat", huge])
    assert [len(t) for t in calls[0]] == [7, task.max_chars]
    assert cut.meta == {"tokens": 6, "truncated": True}
    task._tokenizer = real
    (whole,) = task.preprocess([huge])  # the same tokens as tokenizing it whole
    assert whole.features.tolist() == cut.features.tolist()


def test_classifiers_refuse_empty_text_embeddings_allow_it(make_task):
    cls = make_task(_classifier(), labels=LABELS, name="c")
    for empty in ("", "  ", "\n\t"):
        with pytest.raises(InvalidInput, match="empty"):
            cls.check_item(empty, "data.text")
    make_task(_embedding()).check_item("", "data.text")
